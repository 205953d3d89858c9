package actors

import (
	"crypto/tls"
	"io"
	"net"

	"github.com/valyala/bytebufferpool"
)

// copyPool holds the copy buffers of pairs that cannot splice.
var copyPool bytebufferpool.Pool

// copyStream copies head and then src to dst until src ends, and returns
// the bytes written to dst. When both ends are raw *net.TCPConn, io.Copy
// reaches (*net.TCPConn).ReadFrom, which moves the bytes with splice(2) and
// never through user space. Any wrapper (TLS to the relay, a counting
// conn) takes the pooled-buffer path instead, with a buffer of bufSize.
func copyStream(dst, src net.Conn, head []byte, bufSize int) (int64, error) {
	var n int64
	if len(head) > 0 {
		m, err := dst.Write(head)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	if canSplice(dst, src) {
		m, err := io.Copy(dst, src)
		return n + m, err
	}
	bb := copyPool.Get()
	if cap(bb.B) < bufSize {
		// bytebufferpool hands out empty buffers until it has calibrated:
		// size it explicitly.
		bb.B = make([]byte, bufSize)
	}
	m, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, bb.B[:bufSize])
	copyPool.Put(bb)
	return n + m, err
}

// canSplice reports whether a copy from src to dst takes Linux's splice
// path: both must be raw TCP sockets.
func canSplice(dst, src net.Conn) bool {
	_, d := dst.(*net.TCPConn)
	_, s := src.(*net.TCPConn)
	return d && s
}

// writerOnly and readerOnly hide ReadFrom and WriteTo, so that io.CopyBuffer
// uses the buffer it is given.
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// hardClose closes c without a TLS close_notify, which could block on a
// peer that does not read: aborts must never wait.
func hardClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.Close()
}

// closeWrite half-closes c if it can: a clean end of one direction is passed
// on as a FIN (or TLS close_notify) while the other direction keeps going.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

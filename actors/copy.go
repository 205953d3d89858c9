package actors

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

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
	n, err := writeHead(dst, head)
	if err != nil {
		return n, err
	}
	bb := copyBuffer(dst, src, bufSize)
	defer releaseBuffer(bb)
	m, err := copyOnce(dst, src, bb)
	return n + m, err
}

// writeHead writes the bytes that arrived behind a request, before
// anything read from the socket.
func writeHead(dst net.Conn, head []byte) (int64, error) {
	if len(head) == 0 {
		return 0, nil
	}
	m, err := dst.Write(head)
	return int64(m), err
}

// copyBuffer returns nil when a copy from src to dst can splice, and a
// pooled buffer of size bytes otherwise; releaseBuffer returns it.
func copyBuffer(dst, src net.Conn, size int) *bytebufferpool.ByteBuffer {
	if canSplice(dst, src) {
		return nil
	}
	bb := copyPool.Get()
	if cap(bb.B) < size {
		// bytebufferpool hands out empty buffers until it has calibrated:
		// size it explicitly.
		bb.B = make([]byte, size)
	}
	bb.B = bb.B[:size]
	return bb
}

func releaseBuffer(bb *bytebufferpool.ByteBuffer) {
	if bb != nil {
		copyPool.Put(bb)
	}
}

// copyOnce copies src (a socket, or a LimitedReader over one) to dst:
// with splice(2) when bb is nil, through bb otherwise.
func copyOnce(dst net.Conn, src io.Reader, bb *bytebufferpool.ByteBuffer) (int64, error) {
	if bb == nil {
		return io.Copy(dst, src)
	}
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, bb.B)
}

// chunk is the most a limited pump copies per call when the pair has an
// idle timeout or a byte limit: small enough to notice activity and limits
// promptly, large enough that splice(2) still moves bytes in bulk.
const chunk = 1 << 20

// errIdle and errTooMuch end a pump that hit a pair limit.
var (
	errIdle    = errors.New("actors: pair idle")
	errTooMuch = errors.New("actors: pair byte limit")
)

// limits are a pair's per-direction limits and the activity clock the two
// pumps share.
type limits struct {
	idle     time.Duration
	maxBytes int64
	active   atomic.Int64 // unix nanos of the last byte moved either way
}

// copyLimited copies src to dst like copyStream, in chunks, enforcing l: it
// returns errIdle when neither direction moved a byte for l.idle, and
// errTooMuch once this direction has carried l.maxBytes. Each chunk still
// takes the splice path when both ends are raw TCP.
func copyLimited(dst, src net.Conn, head []byte, bufSize int, l *limits) (int64, error) {
	n, err := writeHead(dst, head)
	if err != nil {
		return n, err
	}
	if n > 0 {
		l.active.Store(time.Now().UnixNano())
	}
	buf := copyBuffer(dst, src, bufSize)
	defer releaseBuffer(buf)
	// Each read wakes at least every quarter of the idle timeout, so bytes
	// moving mid-chunk are recorded in active well before the other
	// direction could judge the pair idle.
	window := l.idle / 4
	for {
		if l.idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(window))
		}
		var m int64
		var err error
		if l.maxBytes > 0 && n >= l.maxBytes {
			// The limit is reached: one more byte breaks it, and is not
			// forwarded; a clean end keeps the pair clean.
			var probe [1]byte
			var k int
			k, err = src.Read(probe[:])
			if k > 0 {
				return n, errTooMuch
			}
			if err == io.EOF {
				return n, nil
			}
		} else {
			want := int64(chunk)
			if l.maxBytes > 0 {
				want = min(want, l.maxBytes-n)
			}
			m, err = copyOnce(dst, &io.LimitedReader{R: src, N: want}, buf)
			n += m
			if m > 0 {
				l.active.Store(time.Now().UnixNano())
			}
			if err == nil {
				if m < want {
					return n, nil // src ended cleanly
				}
				continue
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && l.idle > 0 {
			if time.Since(time.Unix(0, l.active.Load())) < l.idle {
				continue // one direction or the other moved lately
			}
			return n, errIdle
		}
		return n, err
	}
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

// resetClose closes c with a TCP reset (SO_LINGER 0) instead of a FIN, so
// that its peer reads an error, never a clean end: a stream the relay cut
// short must not look complete.
func resetClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
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

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
// the bytes written to dst. When both ends are raw *net.TCPConn the bytes
// move with splice(2) and never through user space (see spliceLoop); any
// wrapper (TLS to the relay, a counting conn) takes the pooled-buffer path
// instead, with a buffer of bufSize.
func copyStream(dst, src net.Conn, head []byte, bufSize int) (int64, error) {
	n, err := writeHead(dst, head)
	if err != nil {
		return n, err
	}
	if d, s, ok := spliceable(dst, src); ok {
		// No defer and few locals here: an idle pair's pumps park below
		// this frame, and a shallow stack lets the runtime shrink theirs
		// to its smallest size.
		return spliceLoop(d, s, n, bufSize, nil)
	}
	return copyThrough(dst, src, n, bufSize, nil)
}

// spliceLoop copies src to dst with splice(2), one burst at a time, and
// returns n plus the bytes it moved. Go's splice path holds a pipe pair
// (two fds and up to 1 MiB of kernel memory) for as long as one ReadFrom
// runs, and a plain io.Copy runs for the pair's whole life: an idle pair
// would hold six fds. So spliceLoop waits for src to be readable without a
// pipe (queued), then splices exactly the bytes queued, which never waits
// on src, and the pipe goes back to Go's pool between bursts. An idle pair
// holds its two sockets only.
//
// TCP urgent data stops splice(2) at its mark, and TIOCINQ counts only up
// to it: when queued reports it, or a splice of queued bytes moves none,
// the rest of the stream is copied through a pooled buffer of bufSize
// (copyThrough), whose reads step over the urgent byte as a buffered relay
// does. spliceLoop never loops without moving a byte.
//
// With l, it enforces the pair's limits as copyLimited does.
func spliceLoop(dst, src *net.TCPConn, n int64, bufSize int, l *limits) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return n, err
	}
	for {
		if err := l.arm(src); err != nil {
			return n, err
		}
		avail, urgent, err := queued(rc)
		if err == nil && urgent {
			return copyThrough(dst, src, n, bufSize, l)
		}
		if err == nil && avail == 0 {
			return n, nil // src ended cleanly
		}
		if l != nil {
			// Activity is recorded per burst: keep bursts short enough
			// for the idle clock, as the buffered path does.
			avail = min(avail, chunk)
		}
		if err == nil && l != nil && l.maxBytes > 0 {
			if n >= l.maxBytes {
				// The limit is reached and more bytes came: the next
				// one breaks it, and is not forwarded.
				return n, errTooMuch
			}
			avail = min(avail, l.maxBytes-n)
		}
		if err == nil {
			var m int64
			m, err = dst.ReadFrom(&io.LimitedReader{R: src, N: avail})
			n += m
			l.moved(m)
			if err == nil && m == 0 {
				// Bytes are queued but splice moved none: an urgent
				// mark came between the count and the splice.
				return copyThrough(dst, src, n, bufSize, l)
			}
		}
		if err != nil {
			if l.stillActive(err) {
				continue
			}
			if l != nil && errors.Is(err, os.ErrDeadlineExceeded) && l.idle > 0 && !l.stopped.Load() {
				return n, errIdle
			}
			return n, err
		}
	}
}

// copyThrough copies the rest of src to dst through a pooled buffer of
// bufSize, even between raw TCP conns, enforcing l if it is set; n is what
// was copied before.
func copyThrough(dst, src net.Conn, n int64, bufSize int, l *limits) (int64, error) {
	bb := pooledBuffer(bufSize)
	defer releaseBuffer(bb)
	if l == nil {
		m, err := copyOnce(dst, src, bb)
		return n + m, err
	}
	return limitedLoop(dst, src, n, bb, l)
}

// spliceable returns dst and src as raw TCP conns when a copy between them
// can splice.
func spliceable(dst, src net.Conn) (*net.TCPConn, *net.TCPConn, bool) {
	d, dok := dst.(*net.TCPConn)
	s, sok := src.(*net.TCPConn)
	return d, s, dok && sok && spliceSupported
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
	return pooledBuffer(size)
}

// pooledBuffer returns a pooled buffer of size bytes.
func pooledBuffer(size int) *bytebufferpool.ByteBuffer {
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

// chunk is the most a limited pump copies per call, spliced or buffered:
// small enough to notice activity and limits promptly.
const chunk = 1 << 20

// errIdle and errTooMuch end a pump that hit a pair limit.
var (
	errIdle    = errors.New("actors: pair idle")
	errTooMuch = errors.New("actors: pair byte limit")
	errAborted = errors.New("actors: pair aborted")
)

// limits are a pair's per-direction limits and the activity clock the two
// pumps share. Its methods accept a nil receiver: a pair without limits.
type limits struct {
	idle     time.Duration
	maxBytes int64
	active   atomic.Int64 // unix nanos of the last byte moved either way
	stopped  atomic.Bool  // the pair is aborting: no deadline may be pushed out again
}

// arm sets src's read deadline for the next wait: each wait wakes at least
// every quarter of the idle timeout, so bytes moving mid-burst are recorded
// in active well before the other direction could judge the pair idle. It
// fails once the pair is aborting, whose past deadline arm must not undo.
func (l *limits) arm(src net.Conn) error {
	if l == nil || l.idle <= 0 {
		return nil
	}
	_ = src.SetReadDeadline(time.Now().Add(l.idle / 4))
	if l.stopped.Load() {
		return errAborted
	}
	return nil
}

// moved records m bytes moved.
func (l *limits) moved(m int64) {
	if l != nil && m > 0 {
		l.active.Store(time.Now().UnixNano())
	}
}

// stillActive reports whether err is only arm's deadline passing while the
// pair is busy: one direction or the other moved bytes within the idle
// timeout, and the pair is not aborting.
func (l *limits) stillActive(err error) bool {
	if l == nil || l.idle <= 0 || l.stopped.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return time.Since(time.Unix(0, l.active.Load())) < l.idle
}

// copyLimited copies src to dst like copyStream, enforcing l: it returns
// errIdle when neither direction moved a byte for l.idle, and errTooMuch
// once this direction has carried l.maxBytes and more comes. Raw TCP ends
// still splice.
func copyLimited(dst, src net.Conn, head []byte, bufSize int, l *limits) (int64, error) {
	n, err := writeHead(dst, head)
	if err != nil {
		return n, err
	}
	l.moved(n)
	if d, s, ok := spliceable(dst, src); ok {
		return spliceLoop(d, s, n, bufSize, l)
	}
	buf := copyBuffer(dst, src, bufSize)
	defer releaseBuffer(buf)
	return limitedLoop(dst, src, n, buf, l)
}

// limitedLoop is copyLimited's loop: chunks of at most chunk bytes through
// buf (splice(2) when buf is nil), l's limits checked between them; n is
// what was copied before.
func limitedLoop(dst, src net.Conn, n int64, buf *bytebufferpool.ByteBuffer, l *limits) (int64, error) {
	for {
		if err := l.arm(src); err != nil {
			return n, err
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
			l.moved(m)
			if err == nil {
				if m < want {
					return n, nil // src ended cleanly
				}
				continue
			}
		}
		if l.stillActive(err) {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && l.idle > 0 && !l.stopped.Load() {
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

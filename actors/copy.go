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
//
// With l (nil for a pair without limits) it enforces the pair's limits: it
// returns errIdle when neither direction moved a byte for l.idle, and
// errTooMuch once this direction has carried l.maxBytes and more comes.
func copyStream(dst, src net.Conn, head []byte, bufSize int, l *limits) (int64, error) {
	n, err := writeHead(dst, head)
	if err != nil {
		return n, err
	}
	l.moved(n)
	if d, s, ok := spliceable(dst, src); ok {
		// No defer and few locals here: an idle pair's pumps park below
		// this frame, and a shallow stack lets the runtime shrink theirs
		// to its smallest size.
		return spliceLoop(d, s, n, bufSize, l)
	}
	return copyThrough(dst, src, n, bufSize, l)
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
// TCP urgent data stops splice(2) at its mark: when a splice of queued
// bytes moves none, the rest of the stream is copied through a pooled buffer of bufSize
// (copyThrough), whose reads step over the urgent byte as a buffered relay
// does. spliceLoop never loops without moving a byte.
//
// With l, it enforces the pair's limits as copyStream says.
func spliceLoop(dst, src *net.TCPConn, n int64, bufSize int, l *limits) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return n, err
	}
	for {
		if err := l.arm(src); err != nil {
			return n, err
		}
		avail, err := queued(rc)
		if err == nil {
			if avail == 0 {
				return n, nil // src ended cleanly
			}
			if avail, err = l.burst(avail, n); err != nil {
				return n, err
			}
			var m int64
			m, err = dst.ReadFrom(&io.LimitedReader{R: src, N: avail})
			n += m
			l.moved(m)
			if err == nil {
				if m == 0 {
					// Bytes are queued but splice moved none: a TCP
					// urgent mark is ahead.
					return copyThrough(dst, src, n, bufSize, l)
				}
				continue
			}
		}
		if err = l.readErr(err); err != nil {
			return n, err
		}
	}
}

// copyThrough copies the rest of src to dst through a pooled buffer of
// bufSize, even between raw TCP conns, enforcing l if it is set; n is what
// was copied before.
func copyThrough(dst, src net.Conn, n int64, bufSize int, l *limits) (int64, error) {
	bb := copyPool.Get()
	if cap(bb.B) < bufSize {
		// bytebufferpool hands out empty buffers until it has calibrated:
		// size it explicitly.
		bb.B = make([]byte, bufSize)
	}
	bb.B = bb.B[:bufSize]
	defer copyPool.Put(bb)
	if l == nil {
		m, err := copyBuffered(dst, src, bb.B)
		return n + m, err
	}
	return limitedLoop(dst, src, n, bb.B, l)
}

// spliceable returns dst and src as raw TCP conns when a copy between them
// can splice: both are raw TCP sockets, on a system with splice(2).
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

// copyBuffered copies src (a socket, or a LimitedReader over one) to dst
// through buf.
func copyBuffered(dst net.Conn, src io.Reader, buf []byte) (int64, error) {
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, buf)
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

// burst returns how many of the avail bytes queued on the source the next
// splice may move, n having been moved already: all of them without
// limits; with limits at most chunk, so that activity is recorded per
// burst as the buffered path does, and no more than the byte limit leaves.
// It fails with errTooMuch once the limit is reached and more bytes came:
// the next one breaks it, and is not forwarded.
func (l *limits) burst(avail, n int64) (int64, error) {
	if l == nil {
		return avail, nil
	}
	avail = min(avail, chunk)
	if l.maxBytes > 0 {
		if n >= l.maxBytes {
			return 0, errTooMuch
		}
		avail = min(avail, l.maxBytes-n)
	}
	return avail, nil
}

// readErr sorts a copy's error under arm's deadline: nil when it is only
// the deadline passing while the pair is busy (one direction or the other
// moved bytes within the idle timeout, and the pair is not aborting: wait
// again), errIdle when neither moved a byte for the idle timeout, and err
// itself otherwise.
func (l *limits) readErr(err error) error {
	if l == nil || l.idle <= 0 || l.stopped.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if time.Since(time.Unix(0, l.active.Load())) < l.idle {
		return nil
	}
	return errIdle
}

// limitedLoop is copyThrough's loop for a pair with limits: chunks of at
// most chunk bytes through buf, l's limits checked between them; n is what
// was copied before.
func limitedLoop(dst, src net.Conn, n int64, buf []byte, l *limits) (int64, error) {
	for {
		if err := l.arm(src); err != nil {
			return n, err
		}
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
			if err == nil || err == io.EOF {
				return n, nil
			}
		} else {
			want, _ := l.burst(chunk, n) // n is below the limit
			var m int64
			m, err = copyBuffered(dst, &io.LimitedReader{R: src, N: want}, buf)
			n += m
			l.moved(m)
			if err == nil {
				if m < want {
					return n, nil // src ended cleanly
				}
				continue
			}
		}
		if err = l.readErr(err); err != nil {
			return n, err
		}
	}
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

package actors

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pipeFDs counts this process's open pipe fds.
func pipeFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// spliceRig is one direction of a pair: the test writes to in, spliceLoop
// copies src to dst, the test reads from out.
type spliceRig struct {
	in, src, dst, out net.Conn
	done              chan struct{}
	n                 int64
	err               error
}

func newSpliceRig(t *testing.T, l *limits) *spliceRig {
	t.Helper()
	in, src := tcpPair(t)
	dst, out := tcpPair(t)
	r := &spliceRig{in: in, src: src, dst: dst, out: out, done: make(chan struct{})}
	t.Cleanup(func() {
		in.Close()
		src.Close()
		dst.Close()
		out.Close()
		<-r.done
	})
	go func() {
		defer close(r.done)
		r.n, r.err = spliceLoop(dst.(*net.TCPConn), src.(*net.TCPConn), 0, 4096, l)
	}()
	return r
}

func (r *spliceRig) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("spliceLoop did not return")
	}
}

// TestSpliceLoopBursts checks that bursts with pauses between them arrive
// whole and in order, and that the peer's FIN ends the loop cleanly with
// the exact count.
func TestSpliceLoopBursts(t *testing.T) {
	r := newSpliceRig(t, nil)
	var sent bytes.Buffer
	for _, size := range []int{1, 3 << 20, 10, 200 << 10} {
		b := make([]byte, size)
		rand.Read(b)
		sent.Write(b)
		if _, err := r.in.Write(b); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		r.out.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(r.out, got); err != nil {
			t.Fatalf("burst of %d: %v", size, err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("burst of %d arrived changed", size)
		}
		time.Sleep(20 * time.Millisecond) // idle between bursts
	}
	r.in.(*net.TCPConn).CloseWrite()
	r.wait(t)
	if r.err != nil || r.n != int64(sent.Len()) {
		t.Fatalf("spliceLoop = %d, %v; want %d, nil", r.n, r.err, sent.Len())
	}
}

// TestSpliceLoopIdleHoldsNoPipe checks the point of spliceLoop: idle loops
// that have already spliced hold no pipe. A plain io.Copy would hold one
// pipe (two fds) per loop.
func TestSpliceLoopIdleHoldsNoPipe(t *testing.T) {
	const loops = 24
	before := pipeFDs(t)
	rigs := make([]*spliceRig, loops)
	for i := range rigs {
		rigs[i] = newSpliceRig(t, nil)
	}
	for i, r := range rigs {
		b := bytes.Repeat([]byte{byte(i)}, 64<<10)
		if _, err := r.in.Write(b); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(b))
		r.out.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(r.out, got); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("loop %d: read %v", i, err)
		}
	}
	// Every loop now waits for its next byte. Go's pipe pool may keep a
	// few pipes for reuse, but none belongs to a loop: collections empty
	// the pool (which under -race also drops pipes at random, leaving them
	// to their cleanups), while a pipe in use would survive them.
	limit := 4 * runtime.GOMAXPROCS(0)
	held := pipeFDs(t) - before
	for i := 0; i < 100 && held > limit; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		held = pipeFDs(t) - before
	}
	if held > limit {
		t.Fatalf("%d idle loops hold %d pipe fds, want at most %d (the pool's)", loops, held, limit)
	}
	t.Logf("%d idle loops: %d pipe fds held (pool)", loops, held)
}

// TestSpliceLoopMaxBytes checks the byte limit on the splice path: exactly
// maxBytes are forwarded, and one more ends the loop with errTooMuch; a
// stream of exactly maxBytes ends cleanly.
func TestSpliceLoopMaxBytes(t *testing.T) {
	l := &limits{maxBytes: 1000}
	r := newSpliceRig(t, l)
	r.in.Write(make([]byte, 1500))
	r.wait(t)
	if r.err != errTooMuch || r.n != 1000 {
		t.Fatalf("spliceLoop = %d, %v; want 1000, errTooMuch", r.n, r.err)
	}
	r.dst.Close()
	got, _ := io.ReadAll(r.out)
	if len(got) != 1000 {
		t.Fatalf("forwarded %d bytes, want 1000", len(got))
	}

	l = &limits{maxBytes: 1000}
	r = newSpliceRig(t, l)
	r.in.Write(make([]byte, 1000))
	r.in.(*net.TCPConn).CloseWrite()
	r.wait(t)
	if r.err != nil || r.n != 1000 {
		t.Fatalf("exactly at the limit: spliceLoop = %d, %v; want 1000, nil", r.n, r.err)
	}
}

// TestSpliceLoopIdleTimeout checks that an idle pair is cut with errIdle
// after its idle timeout, not before.
func TestSpliceLoopIdleTimeout(t *testing.T) {
	l := &limits{idle: 200 * time.Millisecond}
	start := time.Now() // before the last activity: a lower bound load cannot break
	l.moved(1)
	r := newSpliceRig(t, l)
	r.wait(t)
	if d := time.Since(start); r.err != errIdle || d < l.idle {
		t.Fatalf("spliceLoop = %v after %v; want errIdle after at least %v", r.err, d, l.idle)
	}
}

// TestSpliceLoopAbortWithIdleTimeout checks that an abort (as pair.abort
// does it) ends a loop at once even though the loop pushes its own read
// deadline out for the idle timeout: the abort's past deadline must not be
// undone.
func TestSpliceLoopAbortWithIdleTimeout(t *testing.T) {
	l := &limits{idle: time.Minute}
	l.moved(1)
	r := newSpliceRig(t, l)
	for range 3 { // keep the pair active, so only the abort can end it
		r.in.Write([]byte("x"))
		r.out.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(r.out, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	l.stopped.Store(true)
	r.src.SetDeadline(time.Unix(1, 0))
	r.wait(t)
	// 30s: a bound against hangs, well short of the minute's idle timeout.
	if d := time.Since(start); d > 30*time.Second || r.err == nil || errors.Is(r.err, errIdle) {
		t.Fatalf("after abort: %v after %v; want an abort error, long before the idle timeout", r.err, d)
	}
}

// sendUrgent sends b as TCP urgent (out-of-band) data on c.
func sendUrgent(t *testing.T, c net.Conn, b byte) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), []byte{b}, syscall.MSG_OOB, nil)
		return serr != syscall.EAGAIN
	}); err != nil || serr != nil {
		t.Fatalf("send urgent byte: %v %v", err, serr)
	}
}

// TestSpliceLoopUrgentData checks that TCP urgent data, which splice(2)
// cannot pass, neither stalls nor spins the loop: the ordinary bytes on
// both sides of it arrive, the urgent byte is dropped as a buffered relay
// drops it, and the FIN ends the loop. With and without limits.
func TestSpliceLoopUrgentData(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    *limits
	}{{"no limits", nil}, {"idle and byte limits", &limits{idle: 10 * time.Second, maxBytes: 1 << 20}}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.l != nil {
				tc.l.moved(1)
			}
			r := newSpliceRig(t, tc.l)
			r.in.Write([]byte("abc"))
			got := make([]byte, 3)
			r.out.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(r.out, got); err != nil || string(got) != "abc" {
				t.Fatalf("before the urgent byte: %q, %v", got, err)
			}
			sendUrgent(t, r.in, '!')
			r.in.Write([]byte("def"))
			r.in.(*net.TCPConn).CloseWrite()
			r.wait(t)
			if r.err != nil || r.n != 6 {
				t.Fatalf("spliceLoop = %d, %v; want 6, nil", r.n, r.err)
			}
			r.dst.Close()
			rest, _ := io.ReadAll(r.out)
			if string(rest) != "def" {
				t.Fatalf("after the urgent byte: %q, want %q", rest, "def")
			}
		})
	}
}

// TestSpliceable checks which conn pairs take the splice path.
func TestSpliceable(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	if _, _, ok := spliceable(a, b); !ok {
		t.Fatal("two *net.TCPConn must take the splice path")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	_, _, ok1 := spliceable(a, p1)
	_, _, ok2 := spliceable(p1, a)
	if ok1 || ok2 {
		t.Fatal("a wrapped conn must take the buffered path")
	}
}

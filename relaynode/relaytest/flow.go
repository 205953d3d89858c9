package relaytest

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Flow is an endless echo transfer over a conn to an echo server: a writer
// paced at about 32 MB/s and a reader counting the echo. It ends only when
// the conn fails or is closed; tests use it to hold a pair mid-transfer
// while the relay restarts, drains or dies.
type Flow struct {
	conn   net.Conn
	echoed atomic.Int64
	done   chan error // the reader's error, once both goroutines ended
}

// StartFlow starts a Flow on c. The Flow closes c when its reader ends.
func StartFlow(c net.Conn) *Flow {
	f := &Flow{conn: c, done: make(chan error, 1)}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		var err error
		for err == nil {
			var n int
			n, err = c.Read(buf)
			f.echoed.Add(int64(n))
		}
		c.Close() // unblocks the writer
		<-wrote
		f.done <- err
	}()
	return f
}

// Echoed returns the bytes echoed so far.
func (f *Flow) Echoed() int64 { return f.echoed.Load() }

// Done delivers the reader's error (io.EOF for a clean end) once both of
// the Flow's goroutines have ended. It delivers once.
func (f *Flow) Done() <-chan error { return f.done }

// WaitEchoed waits, at most bound, for the flow to have echoed n bytes,
// and fails the test (after stopping the flow) if it has not.
func (f *Flow) WaitEchoed(t testing.TB, n int64, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for f.echoed.Load() < n {
		if time.Now().After(deadline) {
			f.conn.Close()
			<-f.done
			t.Fatalf("flow echoed %d bytes after %v, want %d", f.echoed.Load(), bound, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Wait waits, at most bound, for the flow to end, and returns its error
// (io.EOF for a clean end). It fails the test (after stopping the flow) if
// the flow is still running.
func (f *Flow) Wait(t testing.TB, bound time.Duration) error {
	t.Helper()
	select {
	case err := <-f.done:
		return err
	case <-time.After(bound):
		f.conn.Close()
		<-f.done
		t.Fatalf("flow still running %v after its relay went", bound)
		return nil
	}
}

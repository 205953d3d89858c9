package relaytest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server runs an accept loop on a listener, with one goroutine per
// accepted conn. It records every error Accept returns, other than the
// net.ErrClosed of its own Stop, so that a test can check that Accept never
// failed.
type Server struct {
	ln       net.Listener
	wg       sync.WaitGroup // the accept loop and the handlers
	stopping atomic.Bool
	accepted atomic.Int64

	mu    sync.Mutex // guards the following
	errs  []error
	conns map[net.Conn]struct{}
}

// Serve starts an accept loop on ln that runs handle for each conn and
// closes the conn when handle returns. The server is stopped in the test's
// cleanup.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) *Server {
	t.Helper()
	s := &Server{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.run(handle)
	t.Cleanup(s.Stop)
	return s
}

// ServeEcho serves ln with Echo.
func ServeEcho(t testing.TB, ln net.Listener) *Server {
	t.Helper()
	return Serve(t, ln, Echo)
}

func (s *Server) run(handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !s.stopping.Load() || !errors.Is(err, net.ErrClosed) {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
			}
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.stopping.Load() { // Stop has closed the others already
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			handle(c)
		}()
	}
}

// Accepted returns the number of conns accepted so far.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// AcceptErrs returns the errors Accept returned, other than the
// net.ErrClosed that Stop causes.
func (s *Server) AcceptErrs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// Stop closes the listener and the conns still being handled, and waits for
// the accept loop and every handler. It is safe to call twice.
func (s *Server) Stop() {
	s.stopping.Store(true)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Echo copies c back to itself, for at most a minute, and half-closes c
// once it reads EOF.
func Echo(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(c, c); err == nil {
		_ = HalfClose(c)
	}
}

// HalfClose closes the write side of c, which must have a CloseWrite
// method (a *net.TCPConn, an endpoints.Conn, a *tls.Conn).
func HalfClose(c net.Conn) error {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("relaytest: %T has no CloseWrite", c)
	}
	return cw.CloseWrite()
}

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// server serves one listener with one goroutine per connection, and
// tracks the connections so that close ends them all and waits for every
// goroutine it started.
type server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup // the accept loop and the handlers

	mu        sync.Mutex // guards the following
	conns     map[net.Conn]struct{}
	closed    bool
	acceptErr error // why Accept stopped, when not by close
}

// newServer starts serving ln with handle, which owns its conn until it
// returns; the server closes the conn afterwards.
func newServer(ln net.Listener, handle func(net.Conn)) *server {
	s := &server{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.loop()
	return s
}

// listenTCP serves handle on a new loopback TCP listener.
func listenTCP(handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return newServer(ln, handle), nil
}

// listenOpts are the options of every relay listener of the bench: enough
// callback workers and backlog that the server side never limits a rate
// run.
var listenOpts = []endpoints.Option{endpoints.WithCallbackWorkers(64), endpoints.WithAcceptBacklog(256)}

// listenRelay registers name on the relay at addr and serves handle on it.
func listenRelay(ctx context.Context, addr, name string, handle func(net.Conn), opts ...endpoints.Option) (*server, error) {
	ln, err := endpoints.NewRelayListener(addr, append(listenOpts[:len(listenOpts):len(listenOpts)], opts...)...).
		ListenContext(ctx, "tcp", name)
	if err != nil {
		return nil, fmt.Errorf("register %q on relay %s: %w", name, addr, err)
	}
	return newServer(ln, handle), nil
}

// addr returns the listener's address as a dialer takes it.
func (s *server) addr() string { return s.ln.Addr().String() }

// live returns the number of connections being handled.
func (s *server) live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// loop accepts until the listener closes, one goroutine per connection.
// A transient lack of fds only pauses it.
func (s *server) loop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of fds for a moment: the held pairs free some when
				// they close. Wait rather than spin.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			s.mu.Lock()
			s.acceptErr = err
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// close stops accepting, closes every connection and returns after every
// goroutine of the server has ended. It is safe to call twice.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// err returns why the server stopped accepting before close, or nil.
func (s *server) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acceptErr
}

// echoConn writes back what it reads until EOF. It copies through a small
// buffer rather than io.Copy, so that it never splices: a held direct
// connection and a held relayed one then cost the bench's side the same
// (no pipe fds), and the idle mode's subtraction leaves the relay's share.
func echoConn(c net.Conn) {
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sinkBuffer is the read size of the sink: big reads keep its CPU cost
// low, so that bulk runs measure the path, not the sink.
const sinkBuffer = 256 << 10

// sinkConn reads to EOF, discarding, then writes the byte count as 8
// bytes little-endian: the sender learns that all its bytes arrived.
func sinkConn(c net.Conn) {
	buf := make([]byte, sinkBuffer)
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			break
		}
	}
	var cnt [8]byte
	binary.LittleEndian.PutUint64(cnt[:], uint64(n))
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, _ = c.Write(cnt[:])
}

// spliceTo returns the handler of a bare splice proxy to upstream: dial
// it, copy both ways between the two *net.TCPConn (io.Copy then reaches
// splice(2)), and half-close each side as its direction ends.
func spliceTo(upstream string) func(net.Conn) {
	d := &net.Dialer{Timeout: dialTimeout}
	return func(c net.Conn) {
		up, err := d.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pipe(up, c)
		}()
		pipe(c, up)
		<-done
	}
}

// pipe copies src to dst, then half-closes dst. On an error it closes
// both, so that the other direction ends too.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

package relaytest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyChunk is the most a FaultProxy reads, holds and forwards at once per
// direction of a connection: its only buffer.
const proxyChunk = 32 << 10

// FaultProxy is a TCP proxy on loopback that injects faults into the
// connections it forwards: latency, a per-connection data limit, resets and
// a blackhole. Tests put it between endpoints and a relay to check that a
// fault ends a transfer byte-exact or with an error at both ends, never with
// a silent truncation at one of them.
//
// A clean end of one direction (FIN) is passed on as a half-close, and an
// error ends the whole connection with a reset (RST) toward both peers, so
// the proxy itself never turns a fault into a clean end. SetLatency,
// ResetAll and Blackhole apply to live and new connections alike;
// SetDataLimit applies to new connections. All methods are safe for
// concurrent use.
type FaultProxy struct {
	// Addr is the proxy's host:port on 127.0.0.1.
	Addr string

	target string
	ln     *net.TCPListener
	ctx    context.Context // cancelled by Close: aborts dials to target
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop, connection setups and pipes

	latency   atomic.Int64 // time.Duration before each forwarded chunk
	dataLimit atomic.Int64 // bytes per direction of a new connection; 0: none

	mu        sync.Mutex // guards the following
	conns     map[*proxyConn]struct{}
	closed    bool
	blackhole chan struct{} // non-nil while blackholed; closed when lifted
}

// NewFaultProxy starts a proxy on 127.0.0.1:0 that forwards each accepted
// connection to target (host:port). It starts with no fault. It is closed,
// and its goroutines awaited, in the test's cleanup.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("relaytest: fault proxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &FaultProxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// SetLatency delays each forwarded chunk (at most 32 KiB) by d, in both
// directions of live and new connections. Zero removes the delay.
func (p *FaultProxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetDataLimit makes each direction of each new connection carry at most n
// bytes: the byte past the limit is not forwarded, and the connection is
// reset toward both peers instead (SO_LINGER 0, then close). Zero or less
// removes the limit for connections accepted afterwards.
func (p *FaultProxy) SetDataLimit(n int64) { p.dataLimit.Store(max(n, 0)) }

// ResetAll resets every live connection toward both peers now.
func (p *FaultProxy) ResetAll() {
	for _, pc := range p.live() {
		pc.end(true)
	}
}

// Blackhole makes the link silent while on: the bytes read from either peer
// of every connection, live or new, are discarded, and nothing is closed.
// A peer's FIN or reset seen meanwhile is held and passed on when the
// blackhole is lifted. New connections are still accepted and dialed
// through, but their bytes are dropped too.
func (p *FaultProxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.blackhole == nil && !p.closed:
		p.blackhole = make(chan struct{})
	case !on && p.blackhole != nil:
		close(p.blackhole)
		p.blackhole = nil
	}
}

// Live returns the number of connections the proxy is forwarding.
func (p *FaultProxy) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy: it stops accepting, resets every connection, and
// returns after every goroutine of the proxy has exited. It is safe to call
// twice.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if first {
		p.cancel()
		p.ln.Close()
		p.ResetAll()
	}
	p.wg.Wait()
}

func (p *FaultProxy) live() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		out = append(out, pc)
	}
	return out
}

// serve is the accept loop.
func (p *FaultProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like
			continue
		}
		p.wg.Add(1)
		go p.connect(c)
	}
}

// connect dials the target for one accepted connection and starts its two
// pipes. A failed dial resets the accepted connection.
func (p *FaultProxy) connect(client *net.TCPConn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	sc, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		rst(client)
		return
	}
	pc := &proxyConn{p: p, client: client, server: sc.(*net.TCPConn), done: make(chan struct{})}
	limit := p.dataLimit.Load()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		rst(pc.client)
		rst(pc.server)
		return
	}
	p.conns[pc] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go pc.pipe(pc.server, pc.client, limit)
	go pc.pipe(pc.client, pc.server, limit)
}

// dropping reports whether the blackhole is on.
func (p *FaultProxy) dropping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blackhole != nil
}

// proxyConn is one forwarded connection: the accepted socket and the one
// dialed to the target. Its two pipe goroutines belong to the proxy's wait
// group.
type proxyConn struct {
	p              *FaultProxy
	client, server *net.TCPConn

	finished atomic.Int32 // pipes that ended cleanly; the second closes both
	once     sync.Once
	done     chan struct{} // closed by end: wakes sleeping and held pipes
}

// end closes both sockets, with a reset when rst is set, and forgets the
// connection. Only its first call acts.
func (pc *proxyConn) end(reset bool) {
	pc.once.Do(func() {
		close(pc.done)
		if reset {
			rst(pc.client)
			rst(pc.server)
		} else {
			pc.client.Close()
			pc.server.Close()
		}
		pc.p.mu.Lock()
		delete(pc.p.conns, pc)
		pc.p.mu.Unlock()
	})
}

// pipe forwards src to dst, applying the proxy's faults, until src ends or
// the connection is reset. limit is the data limit of this direction.
func (pc *proxyConn) pipe(dst, src *net.TCPConn, limit int64) {
	defer pc.p.wg.Done()
	buf := make([]byte, proxyChunk)
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(pc.p.latency.Load()); d > 0 && !pc.sleep(d) {
				return
			}
			if !pc.p.dropping() {
				b := buf[:n]
				over := limit > 0 && sent+int64(n) > limit
				if over {
					b = b[:limit-sent]
				}
				if _, werr := dst.Write(b); werr != nil || over {
					pc.end(true)
					return
				}
				sent += int64(n)
			}
		}
		if err != nil {
			// A silent link passes on no end either, until it is lifted.
			if !pc.waitLifted() {
				return
			}
			if err != io.EOF {
				pc.end(true)
				return
			}
			if dst.CloseWrite() != nil {
				pc.end(true)
				return
			}
			if pc.finished.Add(1) == 2 {
				pc.end(false)
			}
			return
		}
	}
}

// sleep waits d, and reports false if the connection ended meanwhile.
func (pc *proxyConn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pc.done:
		return false
	}
}

// waitLifted waits while the blackhole is on, and reports false if the
// connection ended meanwhile.
func (pc *proxyConn) waitLifted() bool {
	for {
		pc.p.mu.Lock()
		bh := pc.p.blackhole
		pc.p.mu.Unlock()
		if bh == nil {
			select {
			case <-pc.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-bh:
		case <-pc.done:
			return false
		}
	}
}

// rst closes c with a reset rather than a FIN.
func rst(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

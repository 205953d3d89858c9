package endpoints_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// recorder is a TCP proxy on loopback that records every byte it forwards:
// an on-path observer between the endpoints and the relay. Each accepted
// connection gives two recordings, one per direction. A clean end of one
// direction is passed on as a half-close, so CloseWrite works through it.
type recorder struct {
	addr   string // where to connect instead of the relay
	target string // the relay's host:port
	limit  int    // bytes recorded per direction; beyond it, overflow
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and the copy goroutines

	mu    sync.Mutex // guards the following
	recs  []*recording
	conns map[net.Conn]struct{}
}

// recording is one direction of one proxied connection.
type recording struct {
	conn     int  // index of the proxied connection, in accept order
	toRelay  bool // the endpoint's bytes towards the relay
	buf      bytes.Buffer
	overflow bool // more than limit bytes came
}

func (rec *recording) String() string {
	dir := "relay→endpoint"
	if rec.toRelay {
		dir = "endpoint→relay"
	}
	return fmt.Sprintf("conn %d %s", rec.conn, dir)
}

// startRecorder starts a recording proxy to target. The test's cleanup
// closes it and waits for its goroutines.
func startRecorder(t testing.TB, target string, limit int) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recorder{addr: ln.Addr().String(), target: target, limit: limit, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *recorder) acceptLoop() {
	defer p.wg.Done()
	for i := 0; ; i++ {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, ioTimeout)
		if err != nil {
			c.Close()
			continue
		}
		toRelay := &recording{conn: i, toRelay: true}
		fromRelay := &recording{conn: i}
		p.mu.Lock()
		if p.conns == nil { // closed meanwhile
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.recs = append(p.recs, toRelay, fromRelay)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c.(*net.TCPConn), up.(*net.TCPConn), toRelay, fromRelay)
	}
}

// pipe runs both directions of one proxied connection and closes both
// sockets when both have ended, or at once on an error in either.
func (p *recorder) pipe(a, b *net.TCPConn, ab, ba *recording) {
	defer p.wg.Done()
	done := make(chan struct{}, 2)
	half := func(dst, src *net.TCPConn, rec *recording) {
		defer func() { done <- struct{}{} }()
		if err := p.copy(dst, src, rec); err != nil {
			a.Close()
			b.Close()
			return
		}
		_ = dst.CloseWrite()
	}
	go half(b, a, ab)
	go half(a, b, ba)
	<-done
	<-done
	a.Close()
	b.Close()
	p.mu.Lock()
	if p.conns != nil {
		delete(p.conns, a)
		delete(p.conns, b)
	}
	p.mu.Unlock()
}

// copy forwards src to dst, recording each chunk before it is written, so
// that bytes the far end has read are surely recorded.
func (p *recorder) copy(dst, src net.Conn, rec *recording) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if rec.buf.Len()+n > p.limit {
				rec.overflow = true
			} else {
				rec.buf.Write(buf[:n])
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// recorded returns a copy of every recording so far.
func (p *recorder) recorded() []recording {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]recording, 0, len(p.recs))
	for _, r := range p.recs {
		c := recording{conn: r.conn, toRelay: r.toRelay, overflow: r.overflow}
		c.buf.Write(r.buf.Bytes())
		out = append(out, c)
	}
	return out
}

// close stops the proxy: the listener, every socket, every goroutine. It
// is safe to call twice.
func (p *recorder) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// via returns a copy of r whose addresses point at the proxy at addr, for
// the transports' listen and dialer: the endpoints then reach the relay
// through the proxy. Only Addr and URL differ; never Close the copy.
func via(r *relaytest.Relay, addr string) *relaytest.Relay {
	v := *r
	v.Addr = addr
	v.URL = "http://" + addr
	if r.RootCAs != nil {
		v.URL = "https://" + addr
	}
	return &v
}

package relaynode

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clusterlink-relay/relay/actors"
)

// routeConn is the route refusals made before any request is read are
// counted under.
const routeConn = "connection"

// connGate guards the listeners of the servers the node runs. It caps, per
// client key, the connections that have not finished their request
// headers (MaxHeaderWaitPerIP), so that one client's flood of half-sent
// requests cannot take every file descriptor until ReadHeaderTimeout cuts
// them; and it holds FDReserve descriptors so that, when accepting fails
// at the process's fd limit, it can still accept the waiting connection
// and refuse it at once, where net/http would back off and leave every
// client stalled.
//
// Connections are not wrapped: a pair must keep its *net.TCPConn to
// splice. The gate finds them again by identity in ConnState.
type connGate struct {
	n *Node

	mu      sync.Mutex             // guards waiting and conns
	waiting map[clientKey]int      // connections with headers unfinished
	conns   map[net.Conn]clientKey // those connections

	resMu   sync.Mutex // guards reserve and closed
	reserve []*os.File
	closed  bool
	short   atomic.Bool // the reserve is below FDReserve
}

func newConnGate(n *Node) *connGate {
	return &connGate{n: n, waiting: make(map[clientKey]int), conns: make(map[net.Conn]clientKey)}
}

// listener returns ln guarded by the gate, and fills the fd reserve.
func (g *connGate) listener(ln net.Listener) net.Listener {
	g.fill()
	return &gateListener{Listener: ln, g: g}
}

// fill opens reserve descriptors up to FDReserve; at the fd limit it
// keeps what it has.
func (g *connGate) fill() {
	g.resMu.Lock()
	defer g.resMu.Unlock()
	for !g.closed && len(g.reserve) < g.n.cfg.FDReserve {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		g.reserve = append(g.reserve, f)
	}
	g.short.Store(!g.closed && len(g.reserve) < g.n.cfg.FDReserve)
}

// take removes one reserve descriptor and closes it, freeing its slot; it
// reports false when the reserve is empty.
func (g *connGate) take() bool {
	g.resMu.Lock()
	defer g.resMu.Unlock()
	if len(g.reserve) == 0 {
		return false
	}
	f := g.reserve[len(g.reserve)-1]
	g.reserve = g.reserve[:len(g.reserve)-1]
	f.Close()
	g.short.Store(true)
	return true
}

// close releases the reserve for good.
func (g *connGate) close() {
	g.resMu.Lock()
	defer g.resMu.Unlock()
	g.closed = true
	for _, f := range g.reserve {
		f.Close()
	}
	g.reserve = nil
}

// keyOfConn returns the client key of a connection's peer, and whether
// the peer is counted: not a trusted proxy, whose clients are many.
func (g *connGate) keyOfConn(c net.Conn) (clientKey, bool) {
	var a netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		a = ap.Addr()
	}
	if len(g.n.cfg.TrustedProxies) > 0 && a.IsValid() && g.n.trusted(a) {
		return clientKey{}, false
	}
	return keyOf(a, g.n.cfg.IPv4Prefix, g.n.cfg.IPv6Prefix), true
}

// admit counts a new connection against its key's cap, or refuses it.
func (g *connGate) admit(c net.Conn) bool {
	if g.n.cfg.MaxHeaderWaitPerIP < 0 {
		return true
	}
	k, counted := g.keyOfConn(c)
	if !counted {
		return true
	}
	g.mu.Lock()
	if g.waiting[k] >= g.n.cfg.MaxHeaderWaitPerIP {
		g.mu.Unlock()
		g.refuse(c, refuseHeaderWaitIP)
		return false
	}
	g.waiting[k]++
	g.conns[c] = k
	g.mu.Unlock()
	return true
}

// state follows a connection of a gated server: headers finished (active),
// handed over (hijacked) or gone (closed) leave the count; idle between
// requests, waiting for the next headers, joins it again (without a
// refusal: the connection is already open).
func (g *connGate) state(c net.Conn, st http.ConnState) {
	if g.n.cfg.MaxHeaderWaitPerIP < 0 {
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn // handed over by the lean path, counted as before
	}
	switch st {
	case http.StateActive, http.StateHijacked, http.StateClosed:
		g.mu.Lock()
		if k, ok := g.conns[c]; ok {
			delete(g.conns, c)
			if g.waiting[k]--; g.waiting[k] <= 0 {
				delete(g.waiting, k)
			}
		}
		g.mu.Unlock()
	case http.StateIdle:
		k, counted := g.keyOfConn(c)
		if !counted {
			return
		}
		g.mu.Lock()
		if _, ok := g.conns[c]; !ok {
			g.conns[c] = k
			g.waiting[k]++
		}
		g.mu.Unlock()
	}
}

// refuse answers a connection refused before its request was read, and
// closes it: a plain-text HTTP refusal on a plain server (one short write
// into an empty send buffer, under a deadline in case), just the close on
// a TLS server, whose client expects a handshake first.
func (g *connGate) refuse(c net.Conn, rf *actors.Refusal) {
	g.n.counters.refused(refusalKey{Route: routeConn, Status: rf.Status, Reason: rf.Reason})
	if g.n.tls == nil {
		body := rf.Reason + "\n"
		b := make([]byte, 0, 192)
		b = append(b, "HTTP/1.1 "...)
		b = strconv.AppendInt(b, int64(rf.Status), 10)
		b = append(b, ' ')
		b = append(b, http.StatusText(rf.Status)...)
		b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
		b = appendHeader(b, "Relay-Node", g.n.engine.NodeID())
		b = append(b, "\r\n"...)
		b = append(b, body...)
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(b)
	}
	c.Close()
}

// gateListener is a listener guarded by a connGate.
type gateListener struct {
	net.Listener
	g *connGate
}

// Accept returns the next connection the gate admits. A connection over
// its key's cap is refused here, and so is, at the fd limit, the one
// waiting: a reserve descriptor is freed to accept it.
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if atFDLimit(err) && l.g.take() {
				l.shed()
				continue
			}
			return nil, err
		}
		if l.g.short.Load() {
			l.g.fill()
		}
		if l.g.admit(c) {
			return c, nil
		}
	}
}

// shed accepts one connection with the descriptor a reserve slot freed and
// refuses it, then refills the reserve if descriptors are free again.
func (l *gateListener) shed() {
	c, err := l.Listener.Accept()
	if err == nil {
		l.g.refuse(c, refuseFDLimit)
	}
	l.g.fill()
}

// atFDLimit reports whether err is an accept failing for want of a file
// descriptor, in the process or the system.
func atFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

package actors

import (
	"net"
	"sync"
	"time"
)

// Side names one end of a pairing.
type Side int

// The two sides of a pairing.
const (
	// Client is the dialing client's side.
	Client Side = iota
	// Server is the registered server's callback side.
	Server
)

// Pairing is the rendezvous of a matched dial and callback. Each side's
// HTTP handler hijacks its connection, writes its 101, and offers the
// connection here; the second offer starts the pair actor. A connection
// offered to a pairing belongs to the pairing from then on: if the other
// side never arrives, or aborts, the pairing closes it.
type Pairing struct {
	// Name is the registered name.
	Name string
	// ClientName and ClientAddr describe the dialing client.
	ClientName string
	ClientAddr string

	engine *Engine
	reg    *Registration
	dialed time.Time // when the client's dial reached the listener
	warm   bool      // the callback was parked (set before the pairing is shared)

	mu     sync.Mutex // guards the following
	conns  [2]net.Conn
	heads  [2][]byte // bytes read with each side's request, forwarded first
	offers int
	closed bool
	timer  *time.Timer
}

func newPairing(e *Engine, reg *Registration, clientName, clientAddr string, dialed time.Time) *Pairing {
	p := &Pairing{Name: reg.Name, ClientName: clientName, ClientAddr: clientAddr, engine: e, reg: reg, dialed: dialed}
	p.timer = time.AfterFunc(e.cfg.CallbackTimeout, p.expire)
	if !e.inflight.add(p) {
		p.fail() // the engine is closing: both sides' offers are refused
	}
	return p
}

// Offer hands side's connection to the pairing, with any bytes already
// read from it (head). It reports whether the pairing took it; if not, the
// pairing has closed conn.
func (p *Pairing) Offer(side Side, conn net.Conn, head []byte) bool {
	p.mu.Lock()
	if p.closed || p.conns[side] != nil {
		p.mu.Unlock()
		resetClose(conn)
		return false
	}
	p.conns[side] = conn
	p.heads[side] = head
	p.offers++
	complete := p.offers == 2
	if complete {
		p.timer.Stop()
		p.closed = true // no more offers; the pair actor owns the conns now
	}
	p.mu.Unlock()
	if complete {
		p.engine.inflight.done(p)
		p.engine.startPair(p)
	}
	return true
}

// Abort reports that side will never offer: its handler failed before it
// had a connection to give (or gave up after the match). The pairing then
// fails, and the other side's connection, if offered, is closed. An Abort
// from a side whose offer was already taken changes nothing: its conn
// belongs to the pairing, or to the pair, from the offer on.
func (p *Pairing) Abort(side Side) {
	p.mu.Lock()
	offered := p.conns[side] != nil
	p.mu.Unlock()
	if !offered {
		p.fail()
	}
}

func (p *Pairing) expire() { p.fail() }

func (p *Pairing) fail() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.timer.Stop()
	conns := p.conns
	p.conns = [2]net.Conn{}
	p.mu.Unlock()
	p.engine.inflight.done(p)
	p.engine.stats.pairingsFailed.Add(1)
	for _, c := range conns {
		if c != nil {
			resetClose(c) // its peer got a 101: it must not read a clean end
		}
	}
}

package actors

import (
	"context"
	"net/http"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// The refusals of a park.
var (
	refuseUnknownRegistration = &Refusal{http.StatusNotFound, "unknown registration"}
	refuseParkLimit           = &Refusal{http.StatusTooManyRequests, "park limit reached"}
	refuseRegistrationEnded   = &Refusal{http.StatusGone, "registration ended"}
)

// States of a parked callback.
const (
	parkWaiting = iota // in its listener's pool
	parkWoken          // given a dial's token
	parkLeft           // left the pool: its handler gave up, or the pool was emptied
)

// Parked is a server's callback parked at its registration (the warm
// pool): a held request with no token yet. A dial that finds one is handed
// to it at once, without a connect event; the handler then presents the
// token it was given as an ordinary callback. Its state is shared by the
// listener actor and the handler, under mu, so that a handler leaving and
// a dial arriving can never both win.
type Parked struct {
	// Registration is the registration the callback belongs to.
	Registration *Registration

	engine   *Engine
	listener *actor.PID
	wake     chan struct{} // closed when a dial's token is set

	mu    sync.Mutex
	state int
	token wire.Token
}

// Woken is closed when a dial has been handed to the callback; Token then
// returns its token.
func (p *Parked) Woken() <-chan struct{} { return p.wake }

// Token returns the token of the dial handed to the callback, once Woken is
// closed.
func (p *Parked) Token() wire.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.token
}

// Leave takes the callback out of the pool, for a handler whose request
// ended, timed out, or whose registration ended or drains. It reports
// false if a dial was handed to it first: the handler must then serve that
// dial (Token) or give it back with Fail.
func (p *Parked) Leave() bool {
	p.mu.Lock()
	st := p.state
	if st == parkWaiting {
		p.state = parkLeft
	}
	p.mu.Unlock()
	if st == parkWaiting {
		p.engine.send(p.listener, &unparkMsg{parked: p})
	}
	return st != parkWoken
}

// Fail gives back the dial handed to the callback, which cannot serve it
// (its connection is gone): the dial goes to another parked callback, or
// to the server's stream as a connect event.
func (p *Parked) Fail() {
	p.engine.send(p.listener, &parkFailedMsg{token: p.Token()})
}

// give hands the dial with token to the callback if it is still waiting.
func (p *Parked) give(token wire.Token) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != parkWaiting {
		return false
	}
	p.state = parkWoken
	p.token = token
	close(p.wake)
	return true
}

// evict takes the callback out of the pool for its listener (registration
// ended, relay draining); its handler learns why from the registration.
func (p *Parked) evict() {
	p.mu.Lock()
	if p.state == parkWaiting {
		p.state = parkLeft
	}
	p.mu.Unlock()
}

// parkMsg parks a callback at the registration id registration of name.
// Routed directory → listener.
type parkMsg struct {
	quiet
	name         string
	registration wire.Token
	reply        chan parkReply
}

type parkReply struct {
	parked *Parked
	err    error
}

// unparkMsg tells a listener that a parked callback has left its pool.
type unparkMsg struct {
	quiet
	parked *Parked
}

// parkFailedMsg gives a dial back to the listener: the parked callback it
// was handed to cannot serve it.
type parkFailedMsg struct {
	quiet
	token wire.Token
}

// coldMsg tells a pending dial it now goes through a connect event: its
// splice is counted on the cold path.
type coldMsg struct{ quiet }

// failMsg answers a pending dial with err.
type failMsg struct {
	quiet
	err error
}

// Park parks a callback for the registration whose secret id is
// registration, of name. It fails with a *Refusal: 404 for an unknown
// registration, 410 once it has ended, 429 when the registration already
// has Config.MaxParked callbacks parked, 503 when the engine drains.
func (e *Engine) Park(ctx context.Context, name string, registration wire.Token) (*Parked, error) {
	if e.refusing() {
		return nil, ErrClosed
	}
	reply := make(chan parkReply, 1)
	e.send(e.directory, &parkMsg{name: name, registration: registration, reply: reply})
	r, err := await(ctx, e, reply)
	if err != nil {
		// A park granted meanwhile must not stay in the pool without a
		// handler, and a dial already handed to it must move on.
		if r, late := lateReply(e, reply); late && r.parked != nil && !r.parked.Leave() {
			r.parked.Fail()
		}
		return nil, err
	}
	return r.parked, r.err
}

// Parked returns the number of callbacks parked at every registration: one
// atomic load.
func (e *Engine) Parked() int64 { return e.stats.parked.Load() }

// park routes a park to the registration it names.
func (d *directory) park(ctx actor.Context, m *parkMsg) {
	if d.draining {
		m.reply <- parkReply{err: refuseDraining}
		return
	}
	if g := d.names[m.name]; g != nil {
		if pid := d.member(g, m.registration); pid != nil {
			ctx.Send(pid, m)
			return
		}
	}
	m.reply <- parkReply{err: refuseUnknownRegistration}
}

// park adds a callback to the registration's pool.
func (l *listener) park(ctx actor.Context, m *parkMsg) {
	switch {
	case l.closed:
		m.reply <- parkReply{err: refuseRegistrationEnded}
		return
	case l.drained:
		m.reply <- parkReply{err: refuseDraining}
		return
	case len(l.parked) >= l.engine.cfg.MaxParked:
		m.reply <- parkReply{err: refuseParkLimit}
		return
	}
	p := &Parked{Registration: l.reg, engine: l.engine, listener: ctx.Self(), wake: make(chan struct{})}
	l.parked = append(l.parked, p)
	l.engine.stats.parked.Add(1)
	m.reply <- parkReply{parked: p}
}

// wakeParked hands the dial with token to the oldest waiting parked
// callback, and reports whether one took it. Callbacks that left are
// dropped from the pool on the way.
func (l *listener) wakeParked(token wire.Token) bool {
	for len(l.parked) > 0 {
		p := l.parked[0]
		l.parked[0] = nil
		l.parked = l.parked[1:]
		l.engine.stats.parked.Add(-1)
		if p.give(token) {
			return true
		}
	}
	return false
}

// unpark drops p from the pool, if it is still there.
func (l *listener) unpark(p *Parked) {
	for i, q := range l.parked {
		if q == p {
			l.parked = append(l.parked[:i], l.parked[i+1:]...)
			l.engine.stats.parked.Add(-1)
			return
		}
	}
}

// evictParked empties the pool: the registration ended or drains.
func (l *listener) evictParked() {
	for _, p := range l.parked {
		p.evict()
	}
	l.engine.stats.parked.Add(-int64(len(l.parked)))
	l.parked = nil
}

// parkFailed re-routes a dial whose parked callback could not serve it: to
// another parked callback, else to the stream as a connect event; it is
// refused if the registration has ended (502), drains or its queue is full
// (503).
func (l *listener) parkFailed(ctx actor.Context, token wire.Token) {
	ev, ok := l.warm[token]
	pid := l.pending[token]
	if !ok || pid == nil {
		return // already answered
	}
	if !l.closed && !l.drained && l.wakeParked(token) {
		return
	}
	delete(l.warm, token)
	switch {
	case l.closed:
		ctx.Send(pid, &failMsg{err: refuseListenerGone})
		return
	case l.drained:
		// The stream may have written its drain event already and read
		// no more events.
		ctx.Send(pid, &failMsg{err: refuseDraining})
		return
	case len(l.reg.events) == cap(l.reg.events):
		ctx.Send(pid, &failMsg{err: refuseQueueFull})
		return
	}
	ctx.Send(pid, &coldMsg{}) // before the callback, which comes through here
	l.enqueue(&StreamEvent{Type: wire.EventConnect, Connect: ev})
}

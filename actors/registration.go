package actors

import (
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// StreamEvent is one SSE event queued for a registration's stream.
type StreamEvent struct {
	// Type is wire.EventConnect or wire.EventDrain.
	Type string
	// Connect is set for connect events.
	Connect wire.ConnectEvent
	// Drain is set for drain events.
	Drain wire.DrainEvent
}

// Registration is one live registration of a name, as its HTTP stream
// handler sees it. The handler writes Events to the stream until Done is
// closed, and calls Close when the stream ends.
type Registration struct {
	yields    bool // RegisterRequest.Yields: an authenticated registration takes the name over
	published bool // in the cluster directory: withdrawn when it ends
	// Name is the registered name.
	Name string
	// ID is the registration's secret id, announced in the ready event and
	// presented with every callback.
	ID wire.Token
	// ClientAddr is the registering server's address.
	ClientAddr string

	// Counters, written by the registration's actors and read by
	// Engine.Registrations.
	since    time.Time
	pending  atomic.Int64 // dials waiting for a callback
	pairs    atomic.Int64 // live pairs
	bytesIn  atomic.Int64 // relayed client → server
	bytesOut atomic.Int64 // relayed server → client

	events  chan *StreamEvent // written by the listener actor only; pointers keep the preallocated queue small
	done    chan struct{}     // closed by the listener actor when it ends
	drained chan struct{}     // closed by the listener actor on drain
	settled chan struct{}     // closed by the listener actor once drained with no pending dial
	reason  string            // the drain reason, set before drained closes
	pid     *actor.PID        // set by the directory before the reply
	engine  *Engine
}

func newRegistration(e *Engine, name, clientAddr string, yields bool, id wire.Token) *Registration {
	published := !id.IsZero()
	if !published {
		id = wire.NewToken()
	}
	return &Registration{
		yields:     yields,
		published:  published,
		Name:       name,
		ID:         id,
		ClientAddr: clientAddr,
		since:      time.Now(),
		events:     make(chan *StreamEvent, e.cfg.EventQueue),
		done:       make(chan struct{}),
		drained:    make(chan struct{}),
		settled:    make(chan struct{}),
		engine:     e,
	}
}

// Events returns the queue of events to write to the stream. It is
// bounded; the listener never blocks on it.
func (r *Registration) Events() <-chan *StreamEvent { return r.events }

// Done is closed when the registration has ended: unregistered, or the
// engine stopped.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Drained is closed when the relay drains: the stream handler writes the
// events still queued, then a drain event with DrainReason, and ends the
// stream. A signal rather than a queued event, so a full queue cannot lose
// it.
func (r *Registration) Drained() <-chan struct{} { return r.drained }

// Settled is closed once the relay drains and the registration has no
// dial waiting for its callback: no dial can be added after a drain, so
// the stream has nothing left to carry.
func (r *Registration) Settled() <-chan struct{} { return r.settled }

// DrainReason returns the drain's reason once Drained is closed.
func (r *Registration) DrainReason() string { return r.reason }

// Pending returns the number of the registration's dials waiting for a
// callback.
func (r *Registration) Pending() int64 { return r.pending.Load() }

// Queued returns the number of events waiting in the queue.
func (r *Registration) Queued() int { return len(r.events) }

// Close ends the registration. Its pending dials fail at once with 502. It
// is safe to call more than once and does not block.
func (r *Registration) Close() {
	r.engine.send(r.engine.directory, &unregisterMsg{listener: r.pid})
}

// RegistrationInfo is a snapshot of one live registration.
type RegistrationInfo struct {
	Name       string
	ClientAddr string
	Since      time.Time
	// Queued is the number of events waiting to be written to the stream.
	Queued int
	// Pending is the number of dials waiting for a callback.
	Pending int64
	// Pairs is the number of live spliced pairs.
	Pairs int64
	// BytesToServer and BytesToClient count bytes relayed by the
	// registration's finished and live pairs, as each copy reports them
	// (a live pair's bytes are counted when its direction ends).
	BytesToServer int64
	BytesToClient int64
}

func (r *Registration) info() RegistrationInfo {
	return RegistrationInfo{
		Name:          r.Name,
		ClientAddr:    r.ClientAddr,
		Since:         r.since,
		Queued:        len(r.events),
		Pending:       r.pending.Load(),
		Pairs:         r.pairs.Load(),
		BytesToServer: r.bytesIn.Load(),
		BytesToClient: r.bytesOut.Load(),
	}
}

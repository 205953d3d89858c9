package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// Event is one SSE event queued for a registration's stream.
type Event struct {
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
	// Name is the registered name.
	Name string
	// ID is the registration's secret id, announced in the ready event and
	// presented with every callback.
	ID wire.Token
	// ClientAddr is the registering server's address.
	ClientAddr string

	events  chan Event    // written by the listener actor only
	done    chan struct{} // closed by the listener actor when it ends
	drained chan struct{} // closed by the listener actor on drain
	reason  string        // the drain reason, set before drained closes
	pid     *actor.PID    // set by the directory before the reply
	engine  *Engine
}

func newRegistration(e *Engine, name, clientAddr string) *Registration {
	return &Registration{
		Name:       name,
		ID:         wire.NewToken(),
		ClientAddr: clientAddr,
		events:     make(chan Event, e.cfg.EventQueue),
		done:       make(chan struct{}),
		drained:    make(chan struct{}),
		engine:     e,
	}
}

// Events returns the queue of events to write to the stream. It is
// bounded; the listener never blocks on it.
func (r *Registration) Events() <-chan Event { return r.events }

// Done is closed when the registration has ended: unregistered, or the
// engine stopped.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Drained is closed when the relay drains: the stream handler writes the
// events still queued, then a drain event with DrainReason, and ends the
// stream. A signal rather than a queued event, so a full queue cannot lose
// it.
func (r *Registration) Drained() <-chan struct{} { return r.drained }

// DrainReason returns the drain's reason once Drained is closed.
func (r *Registration) DrainReason() string { return r.reason }

// Queued returns the number of events waiting in the queue.
func (r *Registration) Queued() int { return len(r.events) }

// Close ends the registration. Its pending dials fail at once with 502. It
// is safe to call more than once and does not block.
func (r *Registration) Close() {
	r.engine.send(r.engine.directory, &unregisterMsg{listener: r.pid})
}

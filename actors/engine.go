package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// Engine is the relay engine: an actor system with one directory. Its
// methods are what the HTTP handlers call; each sends one message and waits,
// bounded, for the reply. They never block on another peer.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	system    *actor.ActorSystem
	root      *actor.RootContext
	directory *actor.PID
	stats     stats
	closed    atomic.Bool
	failed    atomic.Bool // the directory stopped on its own: refuse as closed

	// panicOn, set only by tests, makes an actor of a kind panic on a
	// message it matches: supervision is exercised on the real actors.
	panicOn atomic.Pointer[panicHook]

	inflight *inflight // Pairings and pairs that Close must reach

	cl *clusterState // nil on one node
}

// NewEngine starts an engine. cfg is copied; its zero fields take defaults.
func NewEngine(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		inflight: newInflight(),
	}
	actorLog := slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With("lib", "protoactor")
	e.system = actor.NewActorSystemWithConfig(actor.Configure(
		func(c *actor.Config) { c.LoggerFactory = func(*actor.ActorSystem) *slog.Logger { return actorLog } },
		actor.WithDeadLetterRequestLogging(false),
		// A dead letter starts a throttle goroutine that lives one
		// interval. Stops sent to actors that just died make dead letters
		// at shutdown; a short interval lets Close leave no goroutine
		// behind for long. The throttled log lines are below warn anyway.
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	))
	e.root = e.system.Root
	e.directory = e.root.Spawn(actor.PropsFromProducer(
		func() actor.Actor { return newDirectory(e) },
		actor.WithMailbox(cfg.Mailboxes.Directory.producer(e.stats.mailbox(kindDirectory))),
		actor.WithDispatcher(cfg.Mailboxes.dispatcher()),
		actor.WithSupervisor(stopOnPanic),
		actor.WithGuardian(stopOnPanic),
	))
	if cfg.Cluster != nil {
		if err := e.startCluster(*cfg.Cluster); err != nil {
			_ = e.root.StopFuture(e.directory).Wait()
			e.system.Shutdown()
			return nil, err
		}
	}
	return e, nil
}

// panicHook is a test's order to panic: in an actor of kind, on the first
// message match accepts.
type panicHook struct {
	kind  Kind
	match func(msg any) bool
	fired atomic.Bool
}

// testHook panics if a test asked an actor of kind k to fail on msg. It
// costs one atomic load when no test did.
func (e *Engine) testHook(k Kind, msg any) {
	if h := e.panicOn.Load(); h != nil && h.kind == k && h.match(msg) && h.fired.CompareAndSwap(false, true) {
		panic("actors: test panic in " + k.String())
	}
}

// refusing reports whether calls are refused as after Close.
func (e *Engine) refusing() bool { return e.closed.Load() || e.failed.Load() }

// NodeID returns the node id announced in ready events.
func (e *Engine) NodeID() string { return e.cfg.NodeID }

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Live returns the number of live actors of kind k: one atomic load, for
// hot paths that check a cap.
func (e *Engine) Live(k Kind) int64 { return e.stats.live[k].Load() }

// WaitNone returns nil once no actor of kind k is live (at once if none
// is), or ctx's error if ctx ends first. It is woken by the actor whose end
// brings the count to zero, not by polling.
func (e *Engine) WaitNone(ctx context.Context, k Kind) error { return e.stats.waitZero(ctx, k) }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats { return e.stats.snapshot() }

func (e *Engine) send(pid *actor.PID, msg any) {
	if pid != nil {
		e.root.Send(pid, msg)
	}
}

// replyBound is the longest a caller waits for an actor's reply before it
// is refused 503. An actor answers in microseconds; the bound is only
// reached when the engine is wedged or far past its capacity, so it is
// generous (no healthy but loaded engine reaches it) and fixed rather than a
// setting: it is no knob for latency, only a guarantee that a handler never
// hangs on the engine. PendingDial.Wait adds it to the callback deadline.
const replyBound = 5 * time.Second

// await waits for an actor's reply, for at most replyBound or until ctx
// ends. Replies travel on channels of capacity 1, so an abandoned reply
// never blocks its actor.
func await[R any](ctx context.Context, e *Engine, reply chan R) (R, error) {
	t := getTimer(replyBound)
	defer putTimer(t)
	var zero R
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-t.C:
		return zero, refuseBusy
	}
}

// timers holds stopped reply-bound timers: a request per dial each way
// would otherwise allocate one.
var timers sync.Pool

// getTimer returns a timer that fires after d.
func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and pools it. Since Go 1.23 a stopped timer's channel
// holds no stale tick, so the next Reset starts clean.
func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// lateReply collects the reply to a request whose caller gave up (ctx
// ended, or the reply bound passed while the actor was busy), so that what
// the actors granted meanwhile (a registration, a pending dial, a pairing,
// a park) is released at once rather than left without an owner. It waits
// at most the reply bound again, and reports whether a reply came.
func lateReply[R any](e *Engine, reply chan R) (R, bool) {
	r, err := await(context.Background(), e, reply)
	return r, err == nil
}

// RegisterRequest is a registration as the engine takes it.
type RegisterRequest struct {
	// Name is the name to register.
	Name string
	// ClientAddr is the registering server's address.
	ClientAddr string
	// Replaces, when not zero, is the id of a registration the server held
	// before (a reconnect): if that registration still holds the name, it
	// is ended and replaced at once, instead of a 409 until the relay
	// notices that the old stream is dead.
	Replaces wire.Token
	// Authenticated says the registration proved it may hold the name.
	// An authenticated registration of a live name joins the name's group,
	// and dials are spread over the members round robin; an
	// unauthenticated one gets 409.
	Authenticated bool
	// Yields marks a registration that gives its name up to an
	// authenticated one: when every member of a live name yields, an
	// authenticated registration of it ends them all and holds the name
	// alone, in one step of the directory, so that no other registration
	// can slip in between. The v0 wire's registrations yield.
	Yields bool

	id wire.Token // set by a clustered engine: the id it published
}

// Register registers a name. It fails with a *Refusal: 409 if the name is
// held and the request may not join or replace its holder, 503 if the
// engine drains. On a clustered engine the name is published to the
// cluster directory first, so 409 holds cluster-wide, and 503 answers a
// directory that cannot be written.
func (e *Engine) Register(ctx context.Context, req RegisterRequest) (*Registration, error) {
	if e.refusing() {
		return nil, ErrClosed
	}
	if e.cl != nil {
		return e.registerClustered(ctx, req)
	}
	return e.registerLocal(ctx, req)
}

// registerLocal is the directory actor's step of Register.
func (e *Engine) registerLocal(ctx context.Context, req RegisterRequest) (*Registration, error) {
	reply := make(chan registerReply, 1)
	e.send(e.directory, &registerMsg{req: req, reply: reply})
	r, err := await(ctx, e, reply)
	if err != nil {
		if r, late := lateReply(e, reply); late && r.reg != nil {
			r.reg.Close()
		}
		return nil, err
	}
	return r.reg, r.err
}

// Dial asks the server registered as name for a connection. On success the
// server has been sent a connect event and the PendingDial's Wait returns
// the outcome. It fails with a *Refusal: 404 unknown name, 503 queue full or
// draining. On a clustered engine the member is picked round robin over
// every node's; a dial for another node's member is announced to that node
// and its callback comes here (503 when the directory is unhealthy and the
// name has no member on this node).
func (e *Engine) Dial(ctx context.Context, name, clientName, clientAddr string) (*PendingDial, error) {
	if e.refusing() {
		return nil, ErrClosed
	}
	reply := make(chan dialReply, 1)
	msg := &dialMsg{name: name, clientName: clientName, clientAddr: clientAddr, reply: reply}
	if e.cl != nil {
		if err := e.routeDial(msg); err != nil {
			return nil, err
		}
	}
	e.send(e.directory, msg)
	r, err := await(ctx, e, reply)
	if err != nil {
		if r, late := lateReply(e, reply); late && r.pending != nil {
			r.pending.Cancel()
		}
		return nil, err
	}
	return r.pending, r.err
}

// Callback presents a connect token with the presenting registration's id.
// On success the caller joins the returned Pairing as the Server side. It
// fails with a *Refusal: 404 unknown token, 410 used or expired, 403
// another registration's token.
func (e *Engine) Callback(ctx context.Context, token, registration wire.Token) (*Pairing, error) {
	if e.refusing() {
		return nil, ErrClosed
	}
	reply := make(chan callbackReply, 1)
	e.send(e.directory, &callbackMsg{token: token, registration: registration, reply: reply})
	r, err := await(ctx, e, reply)
	if err != nil {
		if r, late := lateReply(e, reply); late && r.pairing != nil {
			r.pairing.Abort(Server)
		}
		return nil, err
	}
	return r.pairing, r.err
}

// Registrations returns a snapshot of every live registration, in no
// particular order.
func (e *Engine) Registrations(ctx context.Context) ([]RegistrationInfo, error) {
	if e.refusing() {
		return nil, ErrClosed
	}
	reply := make(chan []RegistrationInfo, 1)
	e.send(e.directory, &snapshotMsg{reply: reply})
	return await(ctx, e, reply)
}

// Drain refuses new registrations and dials with 503 and queues a drain
// event on every registration's stream.
func (e *Engine) Drain(reason string) {
	e.send(e.directory, &drainMsg{reason: reason})
}

// Close stops every actor, cuts every pair and waits for the copy
// goroutines. Pending dials are answered 502 and registrations' Done
// channels close. It is safe to call twice.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	if e.cl != nil {
		// Registrations ending from here on are not withdrawn one by
		// one: the directory's own Close takes the node's names away.
		e.cl.closing.Store(true)
	}
	// The directory first: with it stop the listeners and pending dials,
	// which answer every dial; no Pairing is made after.
	if err := e.root.StopFuture(e.directory).Wait(); err != nil {
		e.log.Warn("engine: stop directory", slog.Any("err", err))
	}
	pairings, pairs := e.inflight.close()
	for _, p := range pairings {
		p.fail()
	}
	for _, pid := range pairs {
		e.root.Send(pid, &abortMsg{})
	}
	// Each aborted pair's pumps return and close its conns; the pair
	// actor stops itself once both have reported.
	e.inflight.pumps.Wait()
	// Their reports are queued (a pump sends before it is counted done):
	// let the pair actors count them and stop, within the reply bound.
	ctx, cancel := context.WithTimeout(context.Background(), replyBound)
	_ = e.WaitNone(ctx, KindPair)
	cancel()
	e.stopCluster()
	e.system.Shutdown()
	return nil
}

// newID returns 16 random hex digits.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// minLevel drops records below a level; it routes the actor system's own
// logs to the node's logger at warn and above.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

package actors

import (
	"crypto/subtle"
	"log/slog"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/clusterlink-relay/relay/wire"
)

// directory maps names to listener actors and connect tokens to the
// listener that issued them. Only Receive touches its fields.
type directory struct {
	engine *Engine

	names      map[string]*group
	regs       map[string]*Registration // listener PID id → its registration, while registered
	tokens     map[wire.Token]*actor.PID
	remote     map[wire.Token]*actor.PID // cross-node dials made here: their pending actors, by token
	tombstones *lru.Cache[wire.Token, struct{}]
	draining   bool
	// expected holds, by registration id, the registrations being
	// published to the cluster and not yet registered here, with the
	// Notifies that arrived for them meanwhile (other nodes see the
	// published member before this node's registerMsg comes).
	expected map[wire.Token]*expected
}

// expected is a registration being published, and the Notifies waiting
// for it.
type expected struct {
	name    string
	waiting []*notifyMsg
}

func newDirectory(e *Engine) *directory {
	tomb, err := lru.New[wire.Token, struct{}](e.cfg.Tombstones)
	if err != nil { // only for a size <= 0, which setDefaults rules out
		panic(err)
	}
	return &directory{
		engine:     e,
		names:      make(map[string]*group),
		regs:       make(map[string]*Registration),
		tokens:     make(map[wire.Token]*actor.PID),
		remote:     make(map[wire.Token]*actor.PID),
		tombstones: tomb,
		expected:   make(map[wire.Token]*expected),
	}
}

func (d *directory) Receive(ctx actor.Context) {
	d.engine.testHook(kindDirectory, ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.engine.stats.started(kindDirectory)
	case *actor.Stopped:
		d.engine.stats.stopped(kindDirectory)
		// Outside Close this is a failure: nothing would answer a request
		// sent to the directory any more, so refuse them at once.
		d.engine.failed.Store(true)
	case *expectMsg:
		d.expect(ctx, m)
	case *registerMsg:
		pid := d.register(ctx, m)
		if x := d.expected[m.req.id]; x != nil {
			delete(d.expected, m.req.id)
			d.release(ctx, x, pid)
		}
	case *unregisterMsg:
		d.unregister(ctx, m.listener)
	case *dialMsg:
		d.dial(ctx, m)
	case *callbackMsg:
		d.callback(ctx, m)
	case *parkMsg:
		d.park(ctx, m)
	case *notifyMsg:
		d.notify(ctx, m)
	case *evictMsg:
		d.evict(ctx, m)
	case *pendingDoneMsg:
		// From a cross-node pending dial, whose parent is the directory.
		d.remoteDone(ctx, m.token)
	case *tokenDoneMsg:
		delete(d.tokens, m.token)
		d.tombstones.Add(m.token, struct{}{})
	case *snapshotMsg:
		out := make([]RegistrationInfo, 0, len(d.regs))
		for _, reg := range d.regs {
			out = append(out, reg.info())
		}
		m.reply <- out
	case *drainMsg:
		d.draining = true
		for _, x := range d.expected {
			for _, nm := range x.waiting {
				replyNotify(ctx, nm.sender, refuseDraining)
			}
			x.waiting = nil
		}
		for _, g := range d.names {
			for _, pid := range g.members {
				ctx.Send(pid, m)
			}
		}
		if m.reply != nil {
			// Not a blocking send: the listeners get this same message,
			// and one that fails on it is answered by the supervisor.
			trySend(m.reply, len(d.names))
		}
	case *actor.Terminated:
		if reg, ok := d.regs[m.Who.Id]; ok {
			delete(d.regs, m.Who.Id)
			d.leave(reg.Name, m.Who)
		}
	}
}

// group is the set of live registrations of one name.
type group struct {
	members []*actor.PID
	next    int // round robin over members
}

// member returns the member of g whose registration id is id (compared in
// constant time), or nil.
func (d *directory) member(g *group, id wire.Token) *actor.PID {
	for _, pid := range g.members {
		if r := d.regs[pid.Id]; r != nil && subtle.ConstantTimeCompare(id[:], r.ID[:]) == 1 {
			return pid
		}
	}
	return nil
}

// allYield reports whether every member of g yields its name.
func (d *directory) allYield(g *group) bool {
	for _, pid := range g.members {
		if r := d.regs[pid.Id]; r == nil || !r.yields {
			return false
		}
	}
	return len(g.members) > 0
}

// leave removes pid from name's group, and the group once it is empty.
func (d *directory) leave(name string, pid *actor.PID) {
	g := d.names[name]
	if g == nil {
		return
	}
	for i, m := range g.members {
		if m.Id == pid.Id {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	if len(g.members) == 0 {
		delete(d.names, name)
	}
}

// register makes the listener actor of a new registration and returns
// it, or answers the refusal and returns nil.
func (d *directory) register(ctx actor.Context, m *registerMsg) *actor.PID {
	req := m.req
	if d.draining {
		m.reply <- registerReply{err: refuseDraining}
		return nil
	}
	if g := d.names[req.Name]; g != nil {
		var old *actor.PID
		if !req.Replaces.IsZero() {
			old = d.member(g, req.Replaces)
		}
		switch {
		case old != nil:
			// The holder proved it is the old registration: end it now.
			d.unregister(ctx, old)
			d.engine.stats.replaced.Add(1)
		case req.Authenticated && d.allYield(g):
			// Takes the name over from registrations that yield it.
			for _, pid := range slices.Clone(g.members) {
				d.unregister(ctx, pid)
			}
		case req.Authenticated:
			// Joins the group.
		default:
			m.reply <- registerReply{err: refuseNameTaken}
			return nil
		}
	}
	reg := newRegistration(d.engine, req.Name, req.ClientAddr, req.Yields, req.id)
	props := actor.PropsFromProducer(func() actor.Actor { return newListener(d.engine, reg) },
		actor.WithMailbox(d.engine.cfg.Mailboxes.Listener.producer(d.engine.stats.mailbox(kindListener))),
		actor.WithDispatcher(d.engine.cfg.Mailboxes.dispatcher()),
		actor.WithSupervisor(stopOnPanic))
	d.engine.stats.started(kindListener) // counted at spawn, so Live is never behind
	pid := ctx.Spawn(props)
	reg.pid = pid
	g := d.names[req.Name]
	if g == nil {
		g = &group{}
		d.names[req.Name] = g
	}
	g.members = append(g.members, pid)
	d.regs[pid.Id] = reg
	d.engine.log.Info("registered", slog.String("name", req.Name), slog.String("remote", req.ClientAddr),
		slog.Int("members", len(g.members)))
	m.reply <- registerReply{reg: reg}
	return pid
}

// expect records a registration being published (or, done, forgets it
// and refuses the Notifies that waited for it).
func (d *directory) expect(ctx actor.Context, m *expectMsg) {
	if !m.done {
		if d.expected[m.id] == nil {
			d.expected[m.id] = &expected{name: m.name}
		}
		return
	}
	if x := d.expected[m.id]; x != nil {
		delete(d.expected, m.id)
		d.release(ctx, x, nil)
	}
}

// release hands the Notifies that waited for a registration to its
// listener, pid, in their order; with no listener (the registration was
// refused or never came) each is refused as the registration gone.
func (d *directory) release(ctx actor.Context, x *expected, pid *actor.PID) {
	for _, nm := range x.waiting {
		switch {
		case pid != nil:
			ctx.Send(pid, nm)
		case d.draining:
			replyNotify(ctx, nm.sender, refuseDraining)
		default:
			d.engine.cl.counters.notifyRefused.Add(1)
			replyNotify(ctx, nm.sender, refuseListenerGone)
		}
	}
}

func (d *directory) unregister(ctx actor.Context, pid *actor.PID) {
	reg, ok := d.regs[pid.Id]
	if !ok {
		return
	}
	name := reg.Name
	delete(d.regs, pid.Id)
	d.leave(name, pid)
	d.engine.log.Info("unregistered", slog.String("name", name))
	// A message, not Stop: callbacks already queued at the listener are
	// answered before it stops, and it stops after its children.
	ctx.Send(pid, &closeMsg{})
}

func (d *directory) dial(ctx actor.Context, m *dialMsg) {
	if d.draining {
		m.reply <- dialReply{err: refuseDraining}
		return
	}
	if m.remote != nil {
		d.dialRemote(ctx, m)
		return
	}
	g := d.names[m.name]
	if g == nil {
		m.reply <- dialReply{err: refuseUnknownName}
		return
	}
	var pid *actor.PID
	if !m.registration.IsZero() {
		// The cluster directory picked this registration; if it has
		// just ended, another local member serves.
		pid = d.member(g, m.registration)
	}
	if pid == nil {
		pid = g.members[g.next%len(g.members)]
		g.next++
	}
	m.token = wire.NewToken()
	d.tokens[m.token] = pid
	ctx.Send(pid, m)
}

func (d *directory) callback(ctx actor.Context, m *callbackMsg) {
	pid := d.tokens[m.token]
	if pid == nil && len(d.remote) > 0 && d.remoteCallback(ctx, m) {
		return
	}
	switch {
	case pid == nil && !d.tombstones.Contains(m.token):
		m.reply <- callbackReply{err: refuseUnknownToken}
	case pid == nil:
		m.reply <- callbackReply{err: refuseUsedToken}
	case d.regs[pid.Id] == nil:
		// The registration has ended; its pending dials are being
		// answered 502 and the token is as good as spent.
		m.reply <- callbackReply{err: refuseUsedToken}
	default:
		ctx.Send(pid, m)
	}
}

// stopOnPanic stops a failing actor instead of restarting it: a restarted
// actor would lose the state it owns (its pending dials, its pair), and its
// Stopping handler is what answers the requests that wait on it. The request
// the actor failed on is answered here, 500, since no Stopping knows of it;
// the messages still queued behind it are dropped with the actor, and their
// callers are answered by their reply bound.
var stopOnPanic actor.SupervisorStrategy = stopAndAnswer{}

type stopAndAnswer struct{}

func (stopAndAnswer) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, _, message any) {
	answerFailed(actor.UnwrapEnvelopeMessage(message))
	sup.StopChildren(child)
}

// answerFailed answers msg, a request whose actor failed while handling it,
// with a 500, unless it was answered before the failure.
func answerFailed(msg any) {
	switch m := msg.(type) {
	case *registerMsg:
		trySend(m.reply, registerReply{err: refuseInternal})
	case *dialMsg:
		trySend(m.reply, dialReply{err: refuseInternal})
	case *callbackMsg:
		trySend(m.reply, callbackReply{err: refuseInternal})
	case *parkMsg:
		trySend(m.reply, parkReply{err: refuseInternal})
	case *snapshotMsg:
		trySend(m.reply, nil)
	case *drainMsg:
		if m.reply != nil {
			trySend(m.reply, 0)
		}
	}
}

// trySend sends v on a reply channel (capacity 1) unless it is full.
func trySend[T any](c chan T, v T) {
	select {
	case c <- v:
	default:
	}
}

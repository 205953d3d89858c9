package actors

import (
	"crypto/subtle"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/clusterlink-relay/relay/wire"
)

// directory maps names to listener actors and connect tokens to the
// listener that issued them. Only Receive touches its fields.
type directory struct {
	engine *Engine

	names      map[string]*actor.PID
	namesByPID map[string]string        // listener PID id → name, while registered
	regs       map[string]*Registration // listener PID id → its registration
	tokens     map[wire.Token]*actor.PID
	tombstones *lru.Cache[wire.Token, struct{}]
	draining   bool
}

func newDirectory(e *Engine) *directory {
	tomb, err := lru.New[wire.Token, struct{}](e.cfg.Tombstones)
	if err != nil { // only for a size <= 0, which setDefaults rules out
		panic(err)
	}
	return &directory{
		engine:     e,
		names:      make(map[string]*actor.PID),
		namesByPID: make(map[string]string),
		regs:       make(map[string]*Registration),
		tokens:     make(map[wire.Token]*actor.PID),
		tombstones: tomb,
	}
}

func (d *directory) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.engine.stats.started(kindDirectory)
	case *actor.Stopped:
		d.engine.stats.stopped(kindDirectory)
	case *registerMsg:
		d.register(ctx, m)
	case *unregisterMsg:
		d.unregister(ctx, m.listener)
	case *dialMsg:
		d.dial(ctx, m)
	case *callbackMsg:
		d.callback(ctx, m)
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
		for _, pid := range d.names {
			ctx.Send(pid, m)
		}
		if m.reply != nil {
			m.reply <- len(d.names)
		}
	case *actor.Terminated:
		delete(d.regs, m.Who.Id)
		if name, ok := d.namesByPID[m.Who.Id]; ok {
			delete(d.namesByPID, m.Who.Id)
			if pid := d.names[name]; pid != nil && pid.Id == m.Who.Id {
				delete(d.names, name)
			}
		}
	}
}

func (d *directory) register(ctx actor.Context, m *registerMsg) {
	if d.draining {
		m.reply <- registerReply{err: refuseDraining}
		return
	}
	if pid, taken := d.names[m.name]; taken {
		old := d.regs[pid.Id]
		if m.replaces.IsZero() || old == nil || subtle.ConstantTimeCompare(m.replaces[:], old.ID[:]) != 1 {
			m.reply <- registerReply{err: refuseNameTaken}
			return
		}
		// The holder proved it is the old registration: end it now.
		d.unregister(ctx, pid)
		d.engine.stats.replaced.Add(1)
	}
	reg := newRegistration(d.engine, m.name, m.clientAddr)
	props := actor.PropsFromProducer(func() actor.Actor { return newListener(d.engine, reg) },
		actor.WithMailbox(d.engine.cfg.Mailboxes.Listener.producer(d.engine.stats.mailbox(kindListener))),
		actor.WithSupervisor(stopOnPanic))
	d.engine.stats.started(kindListener) // counted at spawn, so Live is never behind
	pid := ctx.Spawn(props)
	reg.pid = pid
	d.names[m.name] = pid
	d.namesByPID[pid.Id] = m.name
	d.regs[pid.Id] = reg
	d.engine.log.Info("registered", slog.String("name", m.name), slog.String("remote", m.clientAddr))
	m.reply <- registerReply{reg: reg}
}

func (d *directory) unregister(ctx actor.Context, pid *actor.PID) {
	name, ok := d.namesByPID[pid.Id]
	if !ok {
		return
	}
	delete(d.namesByPID, pid.Id)
	delete(d.regs, pid.Id)
	if cur := d.names[name]; cur != nil && cur.Id == pid.Id {
		delete(d.names, name)
		d.engine.log.Info("unregistered", slog.String("name", name))
	}
	// A message, not Stop: callbacks already queued at the listener are
	// answered before it stops, and it stops after its children.
	ctx.Send(pid, &closeMsg{})
}

func (d *directory) dial(ctx actor.Context, m *dialMsg) {
	if d.draining {
		m.reply <- dialReply{err: refuseDraining}
		return
	}
	pid := d.names[m.name]
	if pid == nil {
		m.reply <- dialReply{err: refuseUnknownName}
		return
	}
	m.token = wire.NewToken()
	d.tokens[m.token] = pid
	ctx.Send(pid, m)
}

func (d *directory) callback(ctx actor.Context, m *callbackMsg) {
	pid := d.tokens[m.token]
	if pid != nil {
		if _, live := d.namesByPID[pid.Id]; !live {
			// The registration has ended; its pending dials are being
			// answered 502 and the token is as good as spent.
			m.reply <- callbackReply{err: refuseUsedToken}
			return
		}
	}
	if pid == nil {
		if d.tombstones.Contains(m.token) {
			m.reply <- callbackReply{err: refuseUsedToken}
		} else {
			m.reply <- callbackReply{err: refuseUnknownToken}
		}
		return
	}
	ctx.Send(pid, m)
}

// stopOnPanic stops a failing actor instead of restarting it: a restarted
// actor would lose the state it owns (its pending dials, its pair), and its
// Stopping handler is what answers the requests that wait on it.
var stopOnPanic = actor.NewOneForOneStrategy(0, 0, func(reason any) actor.Directive {
	return actor.StopDirective
})

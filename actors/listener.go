package actors

import (
	"crypto/subtle"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// listener is the actor of one registration. It owns the registration's
// event queue (as its only writer) and its pending children.
type listener struct {
	engine  *Engine
	reg     *Registration
	pending map[wire.Token]*actor.PID
	closed  bool // the registration has ended; done is closed
	drained bool // drained is closed
	settled bool // settled is closed

	// The warm pool: callbacks parked, oldest first, and the connect
	// events of dials handed to them, kept until the dial is answered so
	// that a dial a parked callback gives back can still be sent.
	parked []*Parked
	warm   map[wire.Token]wire.ConnectEvent
}

func newListener(e *Engine, reg *Registration) *listener {
	return &listener{engine: e, reg: reg, pending: make(map[wire.Token]*actor.PID), warm: make(map[wire.Token]wire.ConnectEvent)}
}

func (l *listener) Receive(ctx actor.Context) {
	l.engine.testHook(kindListener, ctx.Message())
	switch m := ctx.Message().(type) {
	case *dialMsg:
		l.dial(ctx, m)
	case *callbackMsg:
		l.callback(ctx, m)
	case *notifyMsg:
		l.notify(ctx, m)
	case *parkMsg:
		l.park(ctx, m)
	case *unparkMsg:
		l.unpark(m.parked)
	case *parkFailedMsg:
		l.parkFailed(ctx, m.token)
	case *pendingDoneMsg:
		delete(l.warm, m.token)
		if pid := l.pending[m.token]; pid != nil {
			delete(l.pending, m.token)
			l.reg.pending.Store(int64(len(l.pending)))
			ctx.Poison(pid)
		}
		l.settle()
	case *drainMsg:
		l.evictParked()
		if !l.drained {
			l.drained = true
			l.reg.reason = m.reason
			close(l.reg.drained)
		}
		l.settle()
	case *closeMsg:
		l.close()
		for _, pid := range l.pending {
			ctx.Poison(pid)
		}
		if len(ctx.Children()) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *actor.Terminated:
		if l.closed && len(ctx.Children()) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *actor.Stopping:
		l.close()
	case *actor.Stopped:
		l.engine.stats.stopped(kindListener)
	}
}

// settle closes the registration's settled signal once it is drained with
// no pending dial.
func (l *listener) settle() {
	if l.drained && !l.settled && len(l.pending) == 0 {
		l.settled = true
		close(l.reg.settled)
	}
}

// close marks the registration ended and tells its stream handler.
func (l *listener) close() {
	l.evictParked()
	if !l.closed {
		l.closed = true
		close(l.reg.done)
		l.engine.withdrawReg(l.reg)
	}
}

func (l *listener) dial(ctx actor.Context, m *dialMsg) {
	refuse := func(err error) {
		ctx.Send(l.engine.directory, &tokenDoneMsg{token: m.token})
		m.reply <- dialReply{err: err}
	}
	if l.closed {
		refuse(refuseListenerGone)
		return
	}
	if len(l.pending) >= l.engine.cfg.MaxPendingPerName {
		refuse(refuseTooManyPending)
		return
	}
	// A parked callback takes the dial at once. Its handler's callback
	// reaches this actor after the pending child below is spawned.
	warm := !l.drained && l.wakeParked(m.token)
	// The listener is the queue's only writer, so room now is room at the
	// send below.
	if !warm && len(l.reg.events) == cap(l.reg.events) {
		l.engine.stats.queueFull.Add(1)
		refuse(refuseQueueFull)
		return
	}
	now := time.Now()
	deadline := now.Add(l.engine.cfg.CallbackTimeout)
	pd := &PendingDial{Token: m.token, Deadline: deadline, outcome: make(chan Outcome, 1)}
	p := &pending{
		engine:       l.engine,
		token:        m.token,
		listener:     ctx.Self(),
		registration: l.reg,
		clientName:   m.clientName,
		clientAddr:   m.clientAddr,
		dialed:       now,
		warm:         warm,
		deadline:     deadline,
		outcome:      pd.outcome,
	}
	l.engine.stats.started(kindPending) // counted at spawn, so Live is never behind
	pid := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return p },
		actor.WithMailbox(l.engine.cfg.Mailboxes.Pending.producer(l.engine.stats.mailbox(kindPending))),
		actor.WithDispatcher(l.engine.cfg.Mailboxes.dispatcher())))
	pd.pid = pid
	pd.engine = l.engine
	l.pending[m.token] = pid
	l.reg.pending.Store(int64(len(l.pending)))
	tok := m.token.String()
	ev := wire.ConnectEvent{
		Token:             tok,
		Client:            m.clientName,
		ClientAddr:        m.clientAddr,
		Callback:          wire.PathAccept + tok,
		DeadlineUnixMilli: deadline.UnixMilli(),
	}
	if warm {
		l.warm[m.token] = ev
	} else {
		l.enqueue(&StreamEvent{Type: wire.EventConnect, Connect: ev})
	}
	m.reply <- dialReply{pending: pd}
}

func (l *listener) callback(ctx actor.Context, m *callbackMsg) {
	pid := l.pending[m.token]
	if pid == nil || l.closed {
		m.reply <- callbackReply{err: refuseUsedToken}
		return
	}
	if subtle.ConstantTimeCompare(m.registration[:], l.reg.ID[:]) != 1 {
		// Refused without spending the token: the genuine callback may
		// still come.
		l.engine.stats.foreignToken.Add(1)
		m.reply <- callbackReply{err: refuseForeignToken}
		return
	}
	ctx.Send(pid, m)
}

// enqueue adds an event without blocking. A full queue is ruled out
// beforehand by dial, the queue's only writer.
func (l *listener) enqueue(ev *StreamEvent) {
	select {
	case l.reg.events <- ev:
	default:
	}
}

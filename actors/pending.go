package actors

import (
	"context"
	"crypto/subtle"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// Outcome is the single answer to a pending dial: a Pairing to join, or a
// refusal.
type Outcome struct {
	// Pairing is set when a callback matched the dial.
	Pairing *Pairing
	// Err is a *Refusal when the dial failed: 504 at the deadline, 502 when
	// the registration ended, 503 when the engine stopped.
	Err error
}

// PendingDial is a dial waiting for its callback. Exactly one Outcome is
// delivered on it, whatever happens to the actors behind it.
type PendingDial struct {
	// Token is the connect token sent to the server.
	Token wire.Token
	// Deadline is when the dial is answered 504 if no callback came.
	Deadline time.Time

	outcome chan Outcome
	pid     *actor.PID
	engine  *Engine
}

// Wait returns the dial's outcome. If ctx ends first, the dial is
// cancelled and Wait still returns its outcome, which may be a Pairing that
// won the race: the caller must then Abort it. Wait returns within the
// callback deadline plus the engine's reply bound.
func (p *PendingDial) Wait(ctx context.Context) Outcome {
	select {
	case o := <-p.outcome:
		return o
	case <-ctx.Done():
	}
	p.engine.send(p.pid, &cancelMsg{})
	t := time.NewTimer(time.Until(p.Deadline) + replyBound)
	defer t.Stop()
	select {
	case o := <-p.outcome:
		return o
	case <-t.C:
		// Unreachable while the pending actor keeps its contract; a
		// bound all the same, so a handler never hangs.
		return Outcome{Err: refuseBusy}
	}
}

// Cancel abandons the dial: its token is spent, and a callback that won the
// race is cut. It returns within the deadline plus the engine's reply bound.
func (p *PendingDial) Cancel() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o := p.Wait(ctx); o.Pairing != nil {
		o.Pairing.Abort(Client)
	}
}

// pending is the actor of one dial waiting for its callback. It sends
// exactly one Outcome, at the latest in Stopping.
type pending struct {
	engine       *Engine
	token        wire.Token
	listener     *actor.PID
	registration *Registration
	clientName   string
	clientAddr   string
	dialed       time.Time
	warm         bool // handed to a parked callback
	deadline     time.Time
	outcome      chan Outcome // capacity 1; written once
	notify       *notifyTo    // a cross-node dial: the Notify to send on start
	tried        []string     // a cross-node dial: the nodes whose Notify failed
	notifySeq    int          // a cross-node dial: the Notify sent last; older answers are stale
	awaiting     bool         // a cross-node dial: the last Notify is unanswered

	timer *time.Timer
	sent  bool
	told  bool // the listener was sent pendingDoneMsg
}

func (p *pending) Receive(ctx actor.Context) {
	p.engine.testHook(kindPending, ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), p.engine.root
		p.timer = time.AfterFunc(time.Until(p.deadline), func() { root.Send(self, &expireMsg{}) })
		if p.notify != nil {
			p.sendNotify(ctx)
		}
	case *callbackMsg:
		if p.notify != nil && subtle.ConstantTimeCompare(m.registration[:], p.registration.ID[:]) != 1 {
			// A cross-node dial: the registration it waits on is known
			// here. Refused without spending the token, as a listener
			// refuses a local one's: the genuine callback may still come.
			p.engine.stats.foreignToken.Add(1)
			m.reply <- callbackReply{err: refuseForeignToken}
			return
		}
		if p.sent {
			m.reply <- callbackReply{err: refuseUsedToken}
			return
		}
		pr := newPairing(p.engine, p.registration, p.clientName, p.clientAddr, p.dialed)
		pr.warm = p.warm
		p.finish(ctx, Outcome{Pairing: pr})
		m.reply <- callbackReply{pairing: pr}
	case *expireMsg:
		if !p.sent {
			p.engine.stats.expired.Add(1)
		}
		p.finish(ctx, Outcome{Err: refuseTimeout})
	case *cancelMsg:
		p.finish(ctx, Outcome{Err: refuseCancelled})
	case *failMsg:
		p.finish(ctx, Outcome{Err: m.err})
	case *coldMsg:
		p.warm = false
	case *connectionLostMsg:
		p.connectionLost(ctx, m.addr)
	case *actor.Stopping:
		if p.timer != nil {
			p.timer.Stop()
		}
		if p.awaiting {
			p.awaiting = false
			p.engine.cl.done(p.notify.pid.Address, ctx.Self())
		}
		if !p.sent {
			p.sent = true
			p.outcome <- Outcome{Err: refuseListenerGone}
		}
		if !p.told {
			// Stopped by a failure, not retired by the listener: the
			// listener must still forget the token.
			p.told = true
			ctx.Send(p.listener, &pendingDoneMsg{token: p.token})
		}
		ctx.Send(p.engine.directory, &tokenDoneMsg{token: p.token})
	case *actor.Stopped:
		p.engine.stats.stopped(kindPending)
	}
}

// finish sends the outcome once and asks the listener to retire this
// actor. The token stays spent from here on.
func (p *pending) finish(ctx actor.Context, o Outcome) {
	if p.sent {
		return
	}
	p.sent = true
	p.outcome <- o
	p.told = true
	ctx.Send(p.listener, &pendingDoneMsg{token: p.token})
}

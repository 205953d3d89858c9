package actors

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Directions of a pair's copies.
const (
	toServer = 0 // client → server
	toClient = 1 // server → client
)

// pair is the actor of one spliced connection. It owns its abort, its
// PairMaxDuration timer and its counters: its timer and Close reach it by
// message (maxDurationMsg, abortMsg), and its two copy goroutines (pumps)
// report their bytes and errors to it (copyDoneMsg), where the limit cuts
// and bytes are counted. What the pumps share without a message is what
// must act at once on the sockets: a pump that fails sets the past
// deadline that stops the other (abort), and the second to return closes
// both conns (finished, aborted).
type pair struct {
	engine  *Engine
	pairing *Pairing
	client  net.Conn
	server  net.Conn
	limits  *limits // nil when the pair has no idle or byte limit

	// Shared by the pumps and Receive, to act on the sockets at once.
	finished atomic.Int32 // pumps returned; the second closes both conns
	aborted  atomic.Bool  // the pair was cut short: close with resets

	// Owned by Receive.
	pumping bool        // the pumps were started, and the pair counted in its registration's; until then the conns are ours
	cut     bool        // a limit cut the pair; counted once
	timer   *time.Timer // PairMaxDuration; nil without
	bytes   [2]int64
	done    int
	started time.Time
}

// abortMsg tells a pair to cut its copies at once: the engine closes.
type abortMsg struct{ quiet }

// maxDurationMsg is a pair's PairMaxDuration, sent by its own timer.
type maxDurationMsg struct{ quiet }

func (e *Engine) startPair(p *Pairing) {
	pa := &pair{engine: e, pairing: p, client: p.conns[Client], server: p.conns[Server]}
	if e.cfg.PairIdleTimeout > 0 || e.cfg.PairMaxBytes > 0 {
		pa.limits = &limits{idle: e.cfg.PairIdleTimeout, maxBytes: e.cfg.PairMaxBytes}
		pa.limits.active.Store(time.Now().UnixNano())
	}
	// The pair's messages run on their senders' goroutines (protoactor's
	// synchronized dispatcher; the mailbox still runs one at a time):
	// Started on the spawner's, which starts the pumps with no hand-off,
	// and each pump's report on the pump's own, which is ending. Nothing
	// the pair does in Receive blocks.
	props := actor.PropsFromProducer(func() actor.Actor { return pa },
		actor.WithMailbox(e.cfg.Mailboxes.Pair.producer(e.stats.mailbox(kindPair))),
		actor.WithDispatcher(inlineDispatcher),
		actor.WithGuardian(stopOnPanic))
	spawned := e.inflight.addPair(pa, func() *actor.PID {
		e.stats.started(kindPair) // counted at spawn, so Live is never behind
		return e.root.Spawn(props)
	}, func(pid *actor.PID) { e.root.Send(pid, &abortMsg{}) })
	if !spawned {
		resetClose(pa.client)
		resetClose(pa.server)
	}
}

func (pa *pair) Receive(ctx actor.Context) {
	pa.engine.testHook(kindPair, ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		pa.started = time.Now()
		p := pa.pairing
		// Counted before the pumps start, so that no byte is relayed
		// before its splice is in the stats.
		pa.engine.stats.spliced.Add(1)
		if p.warm {
			pa.engine.stats.spliceLatencyWarm.observe(time.Since(p.dialed))
		} else {
			pa.engine.stats.spliceLatency.observe(time.Since(p.dialed))
		}
		// addPair counted both pumps, so they start next, whatever else
		// happens here. Their reports queue behind Started.
		self := ctx.Self()
		pa.pumping = true
		go pa.pump(self, toServer, pa.server, pa.client, p.heads[Client])
		go pa.pump(self, toClient, pa.client, pa.server, p.heads[Server])
		p.reg.pairs.Add(1)
		if d := pa.engine.cfg.PairMaxDuration; d > 0 {
			root := pa.engine.root
			pa.timer = time.AfterFunc(d, func() { root.Send(self, &maxDurationMsg{}) })
		}
	case *maxDurationMsg:
		if pa.done < 2 && !pa.aborted.Load() {
			pa.countCut(cutDuration)
		}
		pa.abort()
	case *abortMsg:
		pa.abort()
	case *copyDoneMsg:
		pa.bytes[m.dir] = m.n
		pa.engine.stats.bytes[m.dir].Add(m.n)
		if m.dir == toServer {
			pa.pairing.reg.bytesIn.Add(m.n)
		} else {
			pa.pairing.reg.bytesOut.Add(m.n)
		}
		switch m.err {
		case errIdle:
			pa.countCut(cutIdle)
		case errTooMuch:
			pa.countCut(cutBytes)
		}
		pa.done++
		if pa.done == 2 {
			ctx.Stop(ctx.Self())
		}
	case *actor.Stopping:
		// Engine shutdown, a failure, or both copies are done: either
		// way nothing may keep a copy running.
		if pa.timer != nil {
			pa.timer.Stop()
		}
		if !pa.pumping {
			// Failed before the pumps ran: their count and the conns
			// are released here instead.
			resetClose(pa.client)
			resetClose(pa.server)
			pa.engine.inflight.pumps.Add(-2)
			return
		}
		pa.abort()
	case *actor.Stopped:
		if pa.pumping {
			pa.pairing.reg.pairs.Add(-1)
		}
		pa.engine.inflight.pairDone(pa)
		pa.engine.stats.stopped(kindPair)
		pa.engine.log.Debug("pair closed", slog.String("name", pa.pairing.Name),
			slog.Int64("to_server", pa.bytes[toServer]), slog.Int64("to_client", pa.bytes[toClient]),
			slog.Duration("duration", time.Since(pa.started)))
	}
}

// countCut counts the pair as cut by limit cut: once per pair, whichever
// limit the pair met first.
func (pa *pair) countCut(cut int) {
	if !pa.cut {
		pa.cut = true
		pa.engine.stats.pairsCut[cut].Add(1)
	}
}

// pump runs one direction. A clean end half-closes the destination and
// leaves the other direction running; an error aborts both. The second
// pump to finish closes both conns, then each reports to the pair.
func (pa *pair) pump(self *actor.PID, dir int, dst, src net.Conn, head []byte) {
	defer pa.engine.inflight.pumps.Done()
	n, err := copyStream(dst, src, head, pa.engine.cfg.CopyBuffer, pa.limits)
	if err != nil || closeWrite(dst) != nil {
		pa.abort()
	}
	if pa.finished.Add(1) == 2 {
		if pa.aborted.Load() {
			// Cut short: each peer must read an error, not EOF.
			resetClose(pa.client)
			resetClose(pa.server)
		} else {
			// Both directions ended cleanly; their FINs (or close_notify)
			// are already sent.
			hardClose(pa.client)
			hardClose(pa.server)
		}
	}
	pa.engine.root.Send(self, &copyDoneMsg{dir: dir, n: n, err: err})
}

// abort makes both copies return at once, without closing anything: the
// pumps close the conns when both have returned. It never blocks.
func (pa *pair) abort() {
	pa.aborted.Store(true)
	if pa.limits != nil {
		pa.limits.stopped.Store(true) // before the deadlines: see limits.arm
	}
	past := time.Unix(1, 0)
	pa.client.SetDeadline(past)
	pa.server.SetDeadline(past)
}

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

// pair is the actor of one spliced connection. It owns the two copy
// goroutines; they report to it when they end.
type pair struct {
	engine  *Engine
	pairing *Pairing
	client  net.Conn
	server  net.Conn

	finished atomic.Int32 // copy goroutines done; the second closes both conns
	limits   *limits      // nil when the pair has no idle or byte limit
	cut      atomic.Bool  // a limit cut the pair; counted once
	aborted  atomic.Bool  // the pair was cut short: close with resets
	timer    *time.Timer  // PairMaxDuration; nil without

	// Owned by Receive.
	pumping bool // the pumps were started; until then the conns are ours
	counted bool // counted in the registration's live pairs
	bytes   [2]int64
	done    int
	started time.Time
}

func (e *Engine) startPair(p *Pairing) {
	pa := &pair{engine: e, pairing: p, client: p.conns[Client], server: p.conns[Server]}
	if e.cfg.PairIdleTimeout > 0 || e.cfg.PairMaxBytes > 0 {
		pa.limits = &limits{idle: e.cfg.PairIdleTimeout, maxBytes: e.cfg.PairMaxBytes}
		pa.limits.active.Store(time.Now().UnixNano())
	}
	if !e.trackPair(pa) {
		resetClose(pa.client)
		resetClose(pa.server)
		return
	}
	e.stats.started(kindPair) // counted at spawn, so Live is never behind
	e.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa },
		actor.WithMailbox(e.cfg.Mailboxes.Pair.producer(e.stats.mailbox(kindPair))),
		actor.WithGuardian(stopOnPanic)))
}

func (pa *pair) Receive(ctx actor.Context) {
	pa.engine.testHook(kindPair, ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		pa.started = time.Now()
		p := pa.pairing
		// trackPair counted both pumps, so they start first, whatever
		// else happens here. Their reports queue behind Started.
		self := ctx.Self()
		pa.pumping = true
		go pa.pump(self, toServer, pa.server, pa.client, p.heads[Client])
		go pa.pump(self, toClient, pa.client, pa.server, p.heads[Server])
		pa.engine.stats.spliced.Add(1)
		if p.warm {
			pa.engine.stats.spliceLatencyWarm.observe(time.Since(p.dialed))
		} else {
			pa.engine.stats.spliceLatency.observe(time.Since(p.dialed))
		}
		p.reg.pairs.Add(1)
		pa.counted = true
		if d := pa.engine.cfg.PairMaxDuration; d > 0 {
			pa.timer = time.AfterFunc(d, func() {
				pa.engine.stats.pairsCut[cutDuration].Add(1)
				pa.abort()
			})
		}
	case *copyDoneMsg:
		pa.bytes[m.dir] = m.n
		pa.done++
		if pa.done == 2 {
			ctx.Stop(ctx.Self())
		}
	case *actor.Stopping:
		// Engine shutdown, or both copies are done: either way nothing
		// may keep a copy running.
		if pa.timer != nil {
			pa.timer.Stop()
		}
		if !pa.pumping {
			// Failed before the pumps ran: their count and the conns
			// are released here instead.
			pa.pumping = true
			resetClose(pa.client)
			resetClose(pa.server)
			pa.engine.wg.Add(-2)
			return
		}
		pa.abort()
	case *actor.Stopped:
		if pa.counted {
			pa.pairing.reg.pairs.Add(-1)
		}
		pa.engine.untrackPair(pa)
		pa.engine.stats.stopped(kindPair)
		pa.engine.log.Debug("pair closed", slog.String("name", pa.pairing.Name),
			slog.Int64("to_server", pa.bytes[toServer]), slog.Int64("to_client", pa.bytes[toClient]),
			slog.Duration("duration", time.Since(pa.started)))
	}
}

// pump runs one direction. A clean end half-closes the destination and
// leaves the other direction running; an error aborts both. The second
// pump to finish closes both conns.
func (pa *pair) pump(self *actor.PID, dir int, dst, src net.Conn, head []byte) {
	defer pa.engine.wg.Done()
	n, err := copyStream(dst, src, head, pa.engine.cfg.CopyBuffer, pa.limits)
	pa.countCut(err)
	pa.engine.stats.bytes[dir].Add(n)
	if dir == toServer {
		pa.pairing.reg.bytesIn.Add(n)
	} else {
		pa.pairing.reg.bytesOut.Add(n)
	}
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

// countCut counts the pair as cut by the limit err names, if any: once per
// pair, whichever pump hits a limit first.
func (pa *pair) countCut(err error) {
	cut := -1
	switch err {
	case errIdle:
		cut = cutIdle
	case errTooMuch:
		cut = cutBytes
	}
	if cut >= 0 && pa.cut.CompareAndSwap(false, true) {
		pa.engine.stats.pairsCut[cut].Add(1)
	}
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

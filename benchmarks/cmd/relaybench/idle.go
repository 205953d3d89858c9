package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/clusterlink-relay/relay/actors"
)

// idleMethodInProcess explains the in-process idle measurement.
const idleMethodInProcess = "Same-run subtraction in one process. After a warm-up of relayed dials " +
	"(which fills the relay's bounded caches, e.g. used-token tombstones), the footprint F is read after two GCs " +
	"(HeapAlloc + StackInuse, and /proc/self/fd by kind) once the fd and goroutine counts hold still, with parked " +
	"goroutines filling the runtime's free stack slots first (StackInuse counts stack spans, so reused slots would read low). " +
	"Direct: F before and after holding N direct loopback TCP pairs (client and server ends both in this process, " +
	"the server blocked in Read). Relayed: F before and after holding N pairs dialed through the relay, one byte echoed " +
	"on each so that it is spliced both ways. Relay share per pair = (relayed delta − direct delta) / N: the bench's " +
	"own two ends and their goroutines cancel out, leaving the relay's sockets, pipes, goroutines and heap " +
	"(plus the endpoints library's small per-conn wrapper, which the direct pair lacks)."

// idleMethodRemote explains the idle measurement against a running relay.
const idleMethodRemote = "The running relay's own /metrics (go_memstats_heap_alloc_bytes or heap_inuse, " +
	"go_memstats_stack_inuse_bytes, process_open_fds), read before and after holding N relayed pairs: " +
	"(after − before) / N. The relay's heap is read without a forced GC, so it includes garbage not yet collected."

// idleResult is the idle mode's outcome.
type idleResult struct {
	Method       string               `json:"method"`
	Pairs        int                  `json:"pairs"`
	SetupSeconds float64              `json:"setup_seconds"` // to dial and splice the N relayed pairs
	Samples      map[string]memSample `json:"samples,omitempty"`
	Direct       *footprint           `json:"direct_delta,omitempty"` // N direct pairs
	Relayed      *footprint           `json:"relayed_delta,omitempty"`
	PerPair      *footprint           `json:"relay_per_pair,omitempty"` // the relay's share of one pair
	NA           string               `json:"na,omitempty"`             // why the relay's share is unknown
}

// idleGoalMem and idleGoalFDs are the targets per idle pair.
const (
	idleGoalMem = goalIdleMem
	idleGoalFDs = goalIdleFDs
)

// runIdle holds N idle spliced pairs and reports the relay's memory and
// fds per pair.
func (b *bench) runIdle(ctx context.Context) error {
	n := b.sz.idlePairs
	if need := uint64(10*n + 200); fdLimit() > 0 && fdLimit() < need {
		return fmt.Errorf("%d pairs need about %d fds, the limit is %d: lower -n or raise ulimit -n", n, need, fdLimit())
	}
	relayed := b.relayedEcho(targetRelay)
	b.prog.step("idle: warm-up, %d relayed dials", b.sz.idleWarmup)
	if failed, err := runDials(ctx, relayed.dial, 32, b.sz.idleWarmup); failed > 0 {
		return fmt.Errorf("warm-up: %d dials failed: %w", failed, err)
	}
	if !b.relay.inProcess() {
		return b.runIdleRemote(ctx, relayed, n)
	}
	res := &idleResult{Method: idleMethodInProcess, Pairs: n, Samples: map[string]memSample{}}
	b.res.Idle = res

	// Direct pairs: the bench's own cost of a held pair.
	base := b.echo.live()
	var conns []net.Conn
	s0, s1, err := measureHeld(ctx, func() (err error) {
		b.prog.step("idle: holding %d direct pairs", n)
		if conns, err = holdConns(ctx, b.directEcho().dial, n, b.prog, "idle: direct pairs"); err != nil {
			return err
		}
		return waitFor(ctx, 10*time.Second, "direct pairs not all served", func() bool { return b.echo.live() >= base+n })
	})
	closeAll(conns)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Second, "direct pairs' server ends still open", func() bool { return b.echo.live() <= base }); err != nil {
		return err
	}

	// Relayed pairs.
	relayBase := b.relayEcho.live()
	pairBase := b.relay.live(actors.KindPair)
	conns = nil
	defer func() {
		closeAll(conns)
		_ = waitFor(ctx, 10*time.Second, "relayed pairs still live", func() bool {
			return b.relay.live(actors.KindPair) <= pairBase && b.relayEcho.live() <= relayBase
		})
	}()
	s2, s3, err := measureHeld(ctx, func() (err error) {
		b.prog.step("idle: holding %d relayed pairs", n)
		start := time.Now()
		if conns, err = holdConns(ctx, relayed.dial, n, b.prog, "idle: relayed pairs"); err != nil {
			return err
		}
		res.SetupSeconds = time.Since(start).Seconds()
		return waitFor(ctx, 10*time.Second, fmt.Sprintf("want %d more live pairs at the relay", n), func() bool {
			return b.relay.live(actors.KindPair) >= pairBase+int64(n) && b.relayEcho.live() >= relayBase+n
		})
	})
	if err != nil {
		return err
	}
	res.Samples["before_direct"], res.Samples["direct_held"] = s0, s1
	res.Samples["before_relayed"], res.Samples["relayed_held"] = s2, s3
	d, r := delta(s0, s1), delta(s2, s3)
	per := r.minus(d).per(n)
	res.Direct, res.Relayed, res.PerPair = &d, &r, &per
	b.idleRows(res)
	return nil
}

// runIdleRemote holds N pairs through a running relay and reads its
// footprint from its /metrics, when it exports one.
func (b *bench) runIdleRemote(ctx context.Context, relayed target, n int) error {
	res := &idleResult{Method: idleMethodRemote, Pairs: n}
	b.res.Idle = res
	if b.relay.metrics == "" {
		res.NA = "no -admin: the running relay's memory and fds are unknown"
		b.idleRows(res)
		return nil
	}
	before, err := readProcess(ctx, b.relay.metrics)
	if err != nil {
		return err
	}
	if ok, missing := before.complete(); !ok {
		res.NA = "the relay's /metrics does not export " + missing
		b.idleRows(res)
		return nil
	}
	b.prog.step("idle: holding %d relayed pairs", n)
	start := time.Now()
	conns, err := holdConns(ctx, relayed.dial, n, b.prog, "idle: relayed pairs")
	if err != nil {
		return err
	}
	defer closeAll(conns)
	res.SetupSeconds = time.Since(start).Seconds()
	after, err := readProcess(ctx, b.relay.metrics)
	if err != nil {
		return err
	}
	r := remoteDelta(before, after)
	per := r.per(n)
	res.Relayed, res.PerPair = &r, &per
	b.idleRows(res)
	return nil
}

// remoteDelta returns after − before of a running relay's figures.
func remoteDelta(before, after processFigures) footprint {
	f := footprint{
		HeapBytes:  after.heap - before.heap,
		StackBytes: after.stack - before.stack,
		FDs:        after.fds - before.fds,
	}
	f.TotalBytes = f.HeapBytes + f.StackBytes
	return f
}

// idleRows adds the idle rows: the direct baseline and the relay's checks.
func (b *bench) idleRows(res *idleResult) {
	memGoal := fmt.Sprintf("≤ %d KiB per pair", idleGoalMem>>10)
	fdGoal := fmt.Sprintf("%d fds per pair", idleGoalFDs)
	name := fmt.Sprintf("relay, %d pairs", res.Pairs)
	if res.PerPair == nil {
		b.addNA(row{mode: "idle", target: name + ": memory", figures: res.NA, goal: memGoal}, res.NA)
		b.addNA(row{mode: "idle", target: name + ": fds", figures: res.NA, goal: fdGoal}, res.NA)
		return
	}
	if res.Direct != nil {
		d := res.Direct.per(res.Pairs)
		b.addRow(row{mode: "idle", target: "direct pair (subtracted)", figures: fmt.Sprintf("heap %s + stacks %s = %s, %.2f fds, %.2f goroutines per pair",
			fmtKiB(d.HeapBytes), fmtKiB(d.StackBytes), fmtKiB(d.TotalBytes), d.FDs, d.Goroutines)})
	}
	p := res.PerPair
	b.addCheck(row{mode: "idle", target: name + ": memory", goal: memGoal,
		figures: fmt.Sprintf("heap %s + stacks %s = %s per pair (set up in %.2fs)", fmtKiB(p.HeapBytes), fmtKiB(p.StackBytes), fmtKiB(p.TotalBytes), res.SetupSeconds)},
		fmtKiB(p.TotalBytes), p.TotalBytes <= idleGoalMem)
	figs := fmt.Sprintf("%.2f fds per pair", p.FDs)
	if res.Direct != nil {
		figs = fmt.Sprintf("%.2f fds per pair (%.2f sockets, %.2f pipe fds), %.2f goroutines", p.FDs, p.Sockets, p.Pipes, p.Goroutines)
	}
	b.addCheck(row{mode: "idle", target: name + ": fds", goal: fdGoal, figures: figs},
		fmt.Sprintf("%.2f fds", p.FDs), p.FDs <= idleGoalFDs+0.05)
}

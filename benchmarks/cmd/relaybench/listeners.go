package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
)

// listenersMethodInProcess explains the in-process registration
// measurement.
const listenersMethodInProcess = "Same-run subtraction in one process, on a fresh relay. A registration's cost " +
	"has two sides here: the endpoints listener (its stream socket, goroutine and reader) and the relay's. The endpoint " +
	"side is measured by holding the same N−1 listeners against a holder relay (a baseline, not a relay) that answers the listen request with a ready " +
	"event and then holds the socket with no goroutine and no buffer. The footprint F (HeapAlloc + StackInuse after two GCs, " +
	"/proc/self/fd, with the free stack slots absorbed as in the idle mode) is read before and after each hold; relay share per registration = (relay delta − holder delta) / (N−1). " +
	"That also subtracts the holder's held socket, about one *net.TCPConn (a few hundred bytes), so the memory figure " +
	"slightly understates; for fds the holder's one socket per registration is added back. The dial rate is measured " +
	"with 32 loops to one name while N registrations are live (that name plus N−1 others): at N=1 first and again last, " +
	"flatness being the rate at the largest N over the mean of the two N=1 runs. This relay keeps the default " +
	"SSE queue depth (64), which each registration allocates in full; the other modes' relays use 1024."

// listenersMethodRemote explains the measurement against a running relay.
const listenersMethodRemote = "The running relay's /metrics before and after registering N−1 names: (after − before) / (N−1). " +
	"The dial rate is measured with 32 loops to the bench's echo name while N−1 other names are registered (N=1 first " +
	"and again last; flatness is the rate at the largest N over their mean; the relay " +
	"also holds the bench's echo, warm and sink registrations, and whatever else it serves)."

// listenersResult is the listeners mode's outcome.
type listenersResult struct {
	Method          string               `json:"method"`
	Registrations   int                  `json:"registrations"` // held for the memory figure (N−1)
	Samples         map[string]memSample `json:"samples,omitempty"`
	Holder          *footprint           `json:"holder_delta,omitempty"` // the endpoint side of N−1 registrations
	Relay           *footprint           `json:"relay_delta,omitempty"`
	PerRegistration *footprint           `json:"relay_per_registration,omitempty"`
	NA              string               `json:"na,omitempty"` // why the memory figure is unknown
	Rates           []listenersRate      `json:"rates"`
	Flat            float64              `json:"flat"` // rate at the largest N over the mean of the two runs at N=1
}

// listenersRate is the dial rate to one name with Live registrations.
type listenersRate struct {
	Live int `json:"live_registrations"`
	rateStats
}

// listenersGoal is the memory target per registration, and
// listenersFlat the least ratio of the rate at the largest N to the rate
// at N=1 that still counts as flat on a noisy machine.
const (
	listenersGoal = 32 << 10
	listenersFlat = 0.8
)

// runListeners measures the relay's memory per registration and the dial
// rate to one name as the number of live registrations grows.
func (b *bench) runListeners(ctx context.Context) (err error) {
	n := max(b.sz.listeners, 2)
	if need := uint64(4*n + 200); fdLimit() > 0 && fdLimit() < need {
		return fmt.Errorf("%d registrations need about %d fds, the limit is %d: lower -n or raise ulimit -n", n, need, fdLimit())
	}
	relay, echoName := b.relay, b.name("echo")
	res := &listenersResult{Method: listenersMethodRemote, Registrations: n - 1}
	b.res.Listeners = res
	if b.relay.inProcess() {
		res.Method = listenersMethodInProcess
		res.Samples = map[string]memSample{}
		b.prog.step("listeners: starting a fresh relay")
		cfg := benchConfig(b.log)
		// Each registration's SSE queue is allocated in full: measure the
		// default depth, which 32 loops to one name never fill.
		cfg.EventQueue = 0
		if relay, err = startRelay(cfg); err != nil {
			return err
		}
		defer func() {
			b.noteRelay(ctx, "listeners", relay)
			err = errors.Join(err, relay.close())
		}()
		echoName = b.name("lst-echo")
		echo, err := listenRelay(ctx, relay.addr, echoName, echoConn)
		if err != nil {
			return err
		}
		defer echo.close()
	}
	dial := relayDialer(newDialer(relay.addr), echoName)
	b.prog.step("listeners: warm-up, %d dials", b.sz.idleWarmup)
	if failed, err := runDials(ctx, dial, 32, b.sz.idleWarmup); failed > 0 {
		return fmt.Errorf("warm-up: %d dials failed: %w", failed, err)
	}
	rate := func(live int) {
		label := fmt.Sprintf("listeners: rate with %d live", live)
		b.prog.step("%s, %v", label, b.sz.rateFor)
		st := measureRate(ctx, targetRelay, dial, refConc, b.sz.rateFor, b.prog, label)
		res.Rates = append(res.Rates, listenersRate{Live: live, rateStats: st})
	}
	rate(1)
	// waitLive waits, in process, until the relay holds at most want
	// registrations.
	waitLive := func(want int64) error {
		if !relay.inProcess() {
			return nil
		}
		return waitFor(ctx, dialTimeout, "closed registrations still live at the relay", func() bool {
			return relay.live(actors.KindListener) <= want
		})
	}

	var ls []net.Listener
	defer func() { closeListeners(ls) }()
	if relay.inProcess() {
		ls, err = b.listenersMemory(ctx, relay, n-1, res)
	} else {
		ls, err = b.listenersMemoryRemote(ctx, relay, n-1, res)
	}
	if err != nil {
		return err
	}
	rate(n)
	if mid := n / 10; mid > 1 && mid < n {
		want := relay.live(actors.KindListener) - int64(len(ls)-(mid-1))
		closeListeners(ls[mid-1:])
		ls = ls[:mid-1]
		if err := waitLive(want); err != nil {
			return err
		}
		rate(mid)
	}
	// N=1 again, last: the two runs at N=1 bracket the others in time, so
	// that a drift of the machine does not pass for an effect of N.
	closeListeners(ls)
	ls = nil
	if err := waitLive(1); err != nil {
		return err
	}
	rate(1)
	slices.SortStableFunc(res.Rates, func(a, b listenersRate) int { return a.Live - b.Live })
	if one := rateAtOne(res.Rates); one > 0 {
		res.Flat = rateWithMost(res.Rates).PerSecond / one
	}
	b.listenersRows(res)
	return nil
}

// listenersMemory measures k registrations on the holder relay, then on the
// in-process relay, whose listeners it returns open.
func (b *bench) listenersMemory(ctx context.Context, relay *relayHandle, k int, res *listenersResult) ([]net.Listener, error) {
	holder, err := startHolder()
	if err != nil {
		return nil, err
	}
	var ls []net.Listener
	s0, s1, err := measureHeld(ctx, func() (err error) {
		b.prog.step("listeners: %d registrations on the holder relay", k)
		ls, err = openListeners(ctx, holder.addr(), b.name("holder"), k, b.prog)
		return err
	})
	closeListeners(ls)
	holder.close()
	if err != nil {
		return nil, fmt.Errorf("holder relay: %w", err)
	}
	ls = nil
	base := relay.live(actors.KindListener)
	s2, s3, err := measureHeld(ctx, func() (err error) {
		b.prog.step("listeners: %d registrations on the relay", k)
		if ls, err = openListeners(ctx, relay.addr, b.name("reg"), k, b.prog); err != nil {
			return err
		}
		return waitFor(ctx, dialTimeout, "registrations not all live at the relay", func() bool {
			return relay.live(actors.KindListener) >= base+int64(k)
		})
	})
	if err != nil {
		closeListeners(ls)
		return nil, err
	}
	res.Samples["before_holder"], res.Samples["holder_held"] = s0, s1
	res.Samples["before_relay"], res.Samples["relay_held"] = s2, s3
	sd, rd := delta(s0, s1), delta(s2, s3)
	per := rd.minus(sd).per(k)
	per.FDs++ // the holder's own socket, subtracted with the endpoint side
	per.Sockets++
	res.Holder, res.Relay, res.PerRegistration = &sd, &rd, &per
	return ls, nil
}

// listenersMemoryRemote registers k names on a running relay, reading its
// /metrics before and after when it can, and returns the listeners open.
func (b *bench) listenersMemoryRemote(ctx context.Context, relay *relayHandle, k int, res *listenersResult) ([]net.Listener, error) {
	var before processFigures
	if relay.metrics != "" {
		var err error
		if before, err = readProcess(ctx, relay.metrics); err != nil {
			return nil, err
		}
	}
	b.prog.step("listeners: %d registrations on the relay", k)
	ls, err := openListeners(ctx, relay.addr, b.name("reg"), k, b.prog)
	if err != nil {
		return nil, err
	}
	switch ok, missing := before.complete(); {
	case relay.metrics == "":
		res.NA = "no -admin: the running relay's memory is unknown"
	case !ok:
		res.NA = "the relay's /metrics does not export " + missing
	default:
		after, err := readProcess(ctx, relay.metrics)
		if err != nil {
			closeListeners(ls)
			return nil, err
		}
		rd := remoteDelta(before, after)
		per := rd.per(k)
		res.Relay, res.PerRegistration = &rd, &per
	}
	return ls, nil
}

// rateAtOne returns the mean rate of the runs with one live registration.
func rateAtOne(rs []listenersRate) float64 {
	var sum float64
	n := 0
	for _, r := range rs {
		if r.Live == 1 {
			sum += r.PerSecond
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// rateWithMost returns the rate run with the most live registrations.
func rateWithMost(rs []listenersRate) listenersRate {
	best := rs[0]
	for _, r := range rs {
		if r.Live > best.Live {
			best = r
		}
	}
	return best
}

// openListeners registers k names prefix-0 … prefix-(k−1) on the relay at
// addr, 16 at a time, with the endpoints defaults. On an error it closes
// what it opened.
func openListeners(ctx context.Context, addr, prefix string, k int, p *progress) ([]net.Listener, error) {
	rl := endpoints.NewRelayListener(addr)
	ls, err := openMany(ctx, k, 16, p, "registering", func(i int) (net.Listener, error) {
		return rl.ListenContext(ctx, "tcp", fmt.Sprintf("%s-%d", prefix, i))
	}, closeListeners)
	if err != nil {
		return nil, fmt.Errorf("register %d names: %w", k, err)
	}
	return ls, nil
}

// closeListeners closes every listener, 16 at a time.
func closeListeners(ls []net.Listener) {
	var wg sync.WaitGroup
	ch := make(chan net.Listener)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range ch {
				l.Close()
			}
		}()
	}
	for _, l := range ls {
		ch <- l
	}
	close(ch)
	wg.Wait()
}

// listenersRows adds the rows of the listeners mode.
func (b *bench) listenersRows(res *listenersResult) {
	memGoal := fmt.Sprintf("≤ %d KiB per registration", listenersGoal>>10)
	name := fmt.Sprintf("relay, %d registrations", res.Registrations)
	if p := res.PerRegistration; p != nil {
		if res.Holder != nil {
			s := res.Holder.per(res.Registrations)
			b.addRow(row{mode: "listeners", target: "endpoint side (subtracted)", figures: fmt.Sprintf("heap %s + stacks %s = %s, %.2f fds per registration",
				fmtKiB(s.HeapBytes), fmtKiB(s.StackBytes), fmtKiB(s.TotalBytes), s.FDs)})
		}
		b.addCheck(row{mode: "listeners", target: name + ": memory", goal: memGoal,
			figures: fmt.Sprintf("heap %s + stacks %s = %s, %.2f fds, %.2f goroutines per registration",
				fmtKiB(p.HeapBytes), fmtKiB(p.StackBytes), fmtKiB(p.TotalBytes), p.FDs, p.Goroutines)},
			fmtKiB(p.TotalBytes), p.TotalBytes <= listenersGoal)
	} else {
		b.addNA(row{mode: "listeners", target: name + ": memory", goal: memGoal, figures: res.NA}, res.NA)
	}
	if len(res.Rates) == 0 {
		return
	}
	var figs string
	var errs int64
	for i, r := range res.Rates {
		if i > 0 {
			figs += "  "
		}
		figs += fmt.Sprintf("N=%d %s", r.Live, fmtRate(r.PerSecond))
		errs += r.Errors
	}
	if errs > 0 {
		figs += fmt.Sprintf("  (%d errors)", errs)
	}
	most := rateWithMost(res.Rates)
	b.addCheck(row{mode: "listeners", target: "relay, dial rate c=32 vs live N", figures: figs,
		ratio: fmt.Sprintf("%.2f× at N=%d vs N=1 (mean of first and last run)", res.Flat, most.Live),
		goal:  fmt.Sprintf("flat in N (≥ %.1f× of N=1)", listenersFlat)},
		fmt.Sprintf("%.2f×", res.Flat), res.Flat >= listenersFlat && errs == 0)
}

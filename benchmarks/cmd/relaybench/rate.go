package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// rateWarmup is the round trips each target makes before its first rate
// run.
const rateWarmup = 50

// refConc is the concurrency of the dial rate target.
const refConc = goalRateConc

// runRate measures dials per second on direct, proxy and relay for each
// concurrency, and checks the relay against the bare proxy at 32 loops. Each
// target's time at a concurrency is cut into slices that take turns with
// the other targets', and the median slice is its figure: a burst of
// load from elsewhere on a shared machine then spoils one slice, not a
// whole target.
func (b *bench) runRate(ctx context.Context) error {
	targets := []target{b.directEcho(), b.proxiedEcho(), b.relayedEcho(targetRelay)}
	for _, t := range targets {
		b.prog.step("rate: warm-up, %d dials to %s", rateWarmup, t.name)
		if err := warmUp(ctx, t, rateWarmup); err != nil {
			return err
		}
	}
	slices := b.sz.rateSlices
	slice := b.sz.rateFor / time.Duration(slices)
	for _, c := range b.sz.conc {
		runs := make([]rateStats, len(targets))
		for i, t := range targets {
			runs[i] = rateStats{Target: t.name, Concurrency: c}
		}
		for sl := range slices {
			for i, t := range targets {
				label := fmt.Sprintf("rate: %s, c=%d, slice %d/%d", t.name, c, sl+1, slices)
				b.prog.step("%s, %v", label, slice)
				st := measureRate(ctx, t.name, t.dial, c, slice, b.prog, label)
				if err := ctx.Err(); err != nil {
					return err
				}
				runs[i].add(st)
			}
		}
		for i := range runs {
			runs[i].PerSecond = median(runs[i].Slices)
		}
		b.res.Rate = append(b.res.Rate, runs...)
	}
	b.rateRows(targets)
	return nil
}

// add accounts one slice of a sliced rate run.
func (r *rateStats) add(st rateStats) {
	r.Seconds += st.Seconds
	r.Dials += st.Dials
	r.Errors += st.Errors
	if r.FirstError == "" {
		r.FirstError = st.FirstError
	}
	r.Slices = append(r.Slices, st.PerSecond)
}

// nearestConc returns the concurrency of cs closest to want.
func nearestConc(cs []int, want int) int {
	best := cs[0]
	for _, c := range cs {
		if abs(c-want) < abs(best-want) {
			best = c
		}
	}
	return best
}

// abs returns |x|.
func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// rateAt returns the rate run of target at concurrency c.
func rateAt(runs []rateStats, target string, c int) (rateStats, bool) {
	for _, r := range runs {
		if r.Target == target && r.Concurrency == c {
			return r, true
		}
	}
	return rateStats{}, false
}

// rateRows adds one table row per target: its rate at each concurrency,
// and for the relay the check at 32 loops.
func (b *bench) rateRows(targets []target) {
	ref := nearestConc(b.sz.conc, refConc)
	direct, _ := rateAt(b.res.Rate, targetDirect, ref)
	proxy, _ := rateAt(b.res.Rate, targetProxy, ref)
	for _, t := range targets {
		var figs []string
		var errs int64
		first := ""
		for _, c := range b.sz.conc {
			r, _ := rateAt(b.res.Rate, t.name, c)
			figs = append(figs, fmt.Sprintf("c=%d %s", c, fmtRate(r.PerSecond)))
			errs += r.Errors
			if first == "" {
				first = r.FirstError
			}
		}
		f := strings.Join(figs, "  ")
		if errs > 0 {
			f += fmt.Sprintf("  (%d errors: %s)", errs, first)
		}
		at, _ := rateAt(b.res.Rate, t.name, ref)
		rw := row{mode: "rate", target: t.name, figures: f}
		if t.name != targetDirect && direct.PerSecond > 0 {
			rw.ratio = fmt.Sprintf("%.2f× direct at c=%d", at.PerSecond/direct.PerSecond, ref)
		}
		if t.name != targetRelay {
			b.addRow(rw)
			continue
		}
		rw.goal = fmt.Sprintf("≥ %.1f× proxy at c=%d", goalRate, refConc)
		if ref != refConc {
			rw.goal += fmt.Sprintf(" (c=%d here)", ref)
		}
		ratio := 0.0
		if proxy.PerSecond > 0 {
			ratio = at.PerSecond / proxy.PerSecond
		}
		b.addCheck(rw, fmt.Sprintf("%.2f× proxy (%s vs %s) at c=%d, %d errors",
			ratio, fmtRate(at.PerSecond), fmtRate(proxy.PerSecond), ref, at.Errors), ratio >= goalRate && at.Errors == 0)
	}
}

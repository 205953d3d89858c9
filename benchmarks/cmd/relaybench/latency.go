package main

import (
	"context"
	"fmt"
	"time"
)

// latencyRun is one target's sequential dial latency.
type latencyRun struct {
	Target   string `json:"target"`
	WarmPool int    `json:"warm_pool,omitempty"` // parked callbacks (relay warm)
	// WarmHits is how many of the measured dials the relay handed to a
	// parked callback (relay warm; -1 when the relay does not tell).
	WarmHits int64 `json:"warm_hits,omitempty"`
	latencyStats
	FirstError string    `json:"first_error,omitempty"`
	SamplesUS  []float64 `json:"samples_us"` // every measured round trip, sorted
}

// latencyBlock is how many dials one target makes before the next takes
// its turn. Taking turns spreads the machine's drift over every target,
// and blocks keep each target's dials back to back, as a sequential
// client's are.
const latencyBlock = 50

// latencyWarmUp makes n discarded dials to each target.
func latencyWarmUp(ctx context.Context, prog *progress, targets []target, n int) error {
	for _, t := range targets {
		prog.step("latency: warm-up, %d dials to %s", n, t.name)
		if err := warmUp(ctx, t, n); err != nil {
			return err
		}
	}
	return nil
}

// latencySamples takes n sequential round trips (dial, 1-byte echo,
// close) per target in interleaved blocks of latencyBlock. For each
// target it returns the samples, the errors and the first error's text.
// step is its progress line.
func latencySamples(ctx context.Context, prog *progress, targets []target, n int, step string) (samples [][]time.Duration, errs []int, first []string, err error) {
	samples = make([][]time.Duration, len(targets))
	errs = make([]int, len(targets))
	first = make([]string, len(targets))
	prog.step("%s", step)
	for done := 0; done < n; {
		k := min(latencyBlock, n-done)
		for i, t := range targets {
			for range k {
				if err := ctx.Err(); err != nil {
					return nil, nil, nil, err
				}
				d, err := roundTrip(ctx, t.dial)
				if err != nil {
					if errs[i]++; errs[i] == 1 {
						first[i] = err.Error()
					}
					continue
				}
				samples[i] = append(samples[i], d)
			}
		}
		done += k
		prog.update("latency: %d/%d dials per target", done, n)
	}
	return samples, errs, first, nil
}

// runLatency measures sequential dial, 1-byte echo and close on each
// target, after a discarded warm-up, and checks the relay's p50 and p99
// against the bare proxy's.
func (b *bench) runLatency(ctx context.Context) error {
	targets := []target{b.directEcho(), b.proxiedEcho(), b.relayedEcho(targetRelayCold), b.warmEcho()}
	if err := latencyWarmUp(ctx, b.prog, targets, b.sz.latencyWarmup); err != nil {
		return err
	}
	warm0 := b.relay.warmSplices(ctx) // after the warm-up: only measured dials count
	samples, errs, first, err := latencySamples(ctx, b.prog, targets, b.sz.latencyDials,
		fmt.Sprintf("latency: %d sequential dials per target", b.sz.latencyDials))
	if err != nil {
		return err
	}
	// Only the warm target's registration has a warm pool.
	warmHits := int64(-1)
	if warm0 >= 0 {
		if warm1 := b.relay.warmSplices(ctx); warm1 >= 0 {
			warmHits = warm1 - warm0
		}
	}
	runs := make([]latencyRun, len(targets))
	for i, t := range targets {
		st := summarize(samples[i], errs[i])
		if st.N == 0 {
			return fmt.Errorf("%s: every dial failed: %s", t.name, first[i])
		}
		run := latencyRun{Target: t.name, latencyStats: st, FirstError: first[i]}
		if t.name == targetRelayWarm {
			run.WarmPool, run.WarmHits = b.opt.warm, warmHits
		}
		for _, d := range samples[i] {
			run.SamplesUS = append(run.SamplesUS, us(d))
		}
		runs[i] = run
	}
	b.res.Latency = runs
	b.latencyRows(runs)
	return nil
}

// latencyRows adds the latency table rows and checks.
func (b *bench) latencyRows(runs []latencyRun) {
	direct, proxy := runs[0], runs[1]
	for _, r := range runs {
		figs := fmt.Sprintf("p50 %s  p99 %s  p999 %s  mean %s", fmtUS(r.P50US), fmtUS(r.P99US), fmtUS(r.P999US), fmtUS(r.MeanUS))
		if r.Target == targetRelayWarm && r.WarmHits >= 0 {
			figs += fmt.Sprintf("  (%d of %d dials warm)", r.WarmHits, r.N)
		}
		if r.Errors > 0 {
			figs += fmt.Sprintf("  (%d errors: %s)", r.Errors, r.FirstError)
		}
		name := r.Target
		if r.WarmPool > 0 {
			name = fmt.Sprintf("%s (K=%d)", r.Target, r.WarmPool)
		}
		ratio := ""
		if r.Target != targetDirect {
			ratio = fmt.Sprintf("p50 %.2f× direct", r.P50US/direct.P50US)
		}
		rw := row{mode: "latency", target: name, figures: figs, ratio: ratio}
		var limit float64
		switch r.Target {
		case targetRelayCold:
			limit = goalColdP50
		case targetRelayWarm:
			limit = goalWarmP50
		default:
			b.addRow(rw)
			continue
		}
		rw.ratio += fmt.Sprintf(", %.2f× proxy", r.P50US/proxy.P50US)
		rw.goal = fmt.Sprintf("p50 ≤ %.1f× proxy, p99 ≤ %.0f× proxy's", limit, goalP99)
		met := r.P50US <= limit*proxy.P50US && r.P99US <= goalP99*proxy.P99US && r.Errors == 0
		b.addCheck(rw, fmt.Sprintf("p50 %.2f× proxy, p99 %.2f× proxy's, %d errors", r.P50US/proxy.P50US, r.P99US/proxy.P99US, r.Errors), met)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// spawnModes are the modes the spawn mode runs, in order.
var spawnModes = []string{"latency", "rate", "bulk", "idle"}

// spawnTargetNames are the -targets names, in table order.
var spawnTargetNames = []string{"direct", "proxy", "cold", "warm"}

// spawnRun is the spawn mode's state and results; it is also what
// spawn.json holds.
type spawnRun struct {
	Command    string             `json:"command"`
	Machine    machine            `json:"machine"`
	RelayFlags []string           `json:"relay_flags"`
	PIDs       map[string]int     `json:"pids"`
	Latency    []latencyRun       `json:"latency,omitempty"`
	Rate       []rateStats        `json:"rate,omitempty"`
	Bulk       []bulkRun          `json:"bulk,omitempty"`
	Idle       []spawnIdle        `json:"idle,omitempty"`
	Checks     []spawnCheck       `json:"checks"`
	Errors     map[string]int64   `json:"errors"` // failed round trips, dials or streams per mode
	Refusals   int64              `json:"refusals"`
	RefusalsBy []string           `json:"refusals_by,omitempty"`
	Dials      map[string]int64   `json:"relay_dials,omitempty"`
	Warnings   []string           `json:"relay_warnings,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
	Seconds    map[string]float64 `json:"mode_seconds"`

	opt     options
	sz      sizes
	prog    *progress
	targets map[string]target // by -targets name; "cold sink" etc. for bulk
	relay   *relayHandle
}

// spawnIdle is one path's held-connection cost, read from /proc of the
// process in the middle (the relay, the proxy) or, for direct, of the
// server.
type spawnIdle struct {
	Target  string      `json:"target"`
	Process string      `json:"process"`
	Conns   int         `json:"conns"`
	Before  procFigures `json:"before"`
	After   procFigures `json:"after"`
	PerConn procFigures `json:"per_conn"`
}

// spawnCheck is one target of the project, checked in the run.
type spawnCheck struct {
	Metric string  `json:"metric"`
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"` // NaN when not measured
	Shown  string  `json:"shown"`
	Met    bool    `json:"met"`
}

// runSpawn is the spawn mode: the relay binary, the servers and the bare
// proxy each in its own process, the probe in this one.
func runSpawn(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	s := &spawnRun{
		Command: o.command, Machine: describeMachine(), RelayFlags: o.relayFlags,
		PIDs: map[string]int{}, Errors: map[string]int64{}, Seconds: map[string]float64{},
		opt: o, sz: o.sizes(), prog: newProgress(stderr), targets: map[string]target{},
	}
	if note := raiseFDLimit(); note != "" {
		s.Notes = append(s.Notes, note)
	}
	bin := o.relayBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "relaybench-spawn-")
		if err != nil {
			return fmt.Errorf("temp dir for the relay binary: %w", err)
		}
		defer os.RemoveAll(dir)
		s.prog.step("spawn: go build %s", procs.RelayPackage)
		if bin, err = procs.Build(ctx, dir, false); err != nil {
			return err
		}
	}
	relayLog := new(relayLog)
	relay, err := procs.StartNode(ctx, bin, procs.NodeConfig{Args: o.relayFlags, ReadyBound: childStartTimeout, LogLine: relayLog.line})
	if err != nil {
		return err
	}
	var servers, proxy *childProc
	defer func() {
		errs := []error{err, proxy.stop(5 * time.Second), servers.stop(5 * time.Second)}
		if relay != nil {
			errs = append(errs, relay.Term(relayGrace))
		}
		err = errors.Join(errs...)
	}()
	addr, admin := relay.Addr, relay.AdminAddr
	s.PIDs["relay"] = relay.PID()
	s.relay = remoteRelay(addr, admin)
	s.prog.step("spawn: relaynode pid %d on %s, admin %s", relay.PID(), addr, admin)
	prefix := "relaybench-" + randomID()
	servers, srv, err := startChild(roleServers, childRelayEnv+"="+addr, childPrefixEnv+"="+prefix, childWarmEnv+"="+strconv.Itoa(o.warm))
	if err != nil {
		return err
	}
	s.PIDs["servers"] = servers.PID()
	proxy, prx, err := startChild(roleProxy, childUpstreamEnv+"="+srv["echo"]+","+srv["sink"])
	if err != nil {
		return err
	}
	s.PIDs["proxy"] = proxy.PID()
	s.prog.step("spawn: servers pid %d, proxy pid %d", servers.PID(), proxy.PID())
	if o.pause > 0 {
		s.prog.step("spawn: pausing %v before measuring", o.pause)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.pause):
		}
	}
	dialer := newDialer(addr, s.opt.dialOptions()...)
	s.targets["direct"] = target{targetDirect, tcpDialer(srv["echo"])}
	s.targets["proxy"] = target{targetProxy, tcpDialer(prx["echo"])}
	s.targets["cold"] = target{targetRelayCold, relayDialer(dialer, prefix+"-echo")}
	s.targets["warm"] = target{targetRelayWarm, relayDialer(dialer, prefix+"-echo-warm")}
	s.targets["direct sink"] = target{targetDirect, tcpDialer(srv["sink"])}
	s.targets["proxy sink"] = target{targetProxy, tcpDialer(prx["sink"])}
	s.targets["cold sink"] = target{targetRelayCold, relayDialer(dialer, prefix+"-sink")}

	var errs []error
	for _, m := range o.modes {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("interrupted before %s: %w", m, ctx.Err()))
			break
		}
		start := time.Now()
		s.Errors[m] += 0 // every mode run shows its count, 0 included
		var merr error
		switch m {
		case "latency":
			merr = s.latency(ctx)
		case "rate":
			merr = s.rate(ctx)
		case "bulk":
			merr = s.bulk(ctx)
		case "idle":
			merr = s.idle(ctx, map[string]int{"direct": servers.PID(), "proxy": proxy.PID(), "cold": relay.PID()})
		}
		s.Seconds[m] = time.Since(start).Seconds()
		if merr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, merr))
			s.Errors[m]++
		}
	}
	s.readCounters(ctx)
	s.prog.done()
	// Stop the relay now, so that its warnings up to its exit are counted.
	stopErr := relay.Term(relayGrace)
	n, first := relayLog.summary()
	relay = nil
	if n > 0 {
		s.Warnings = append([]string{fmt.Sprintf("%d warning or error lines", n)}, first...)
	}
	s.checks()
	s.report(stdout)
	if o.out != "" {
		if werr := s.write(o.out); werr != nil {
			errs = append(errs, werr)
		} else {
			fmt.Fprintf(stdout, "\nwrote %s\n", filepath.Join(o.out, "spawn.json"))
		}
	}
	return errors.Join(append(errs, stopErr)...)
}

// selected returns the -targets names among want, in table order.
func (s *spawnRun) selected(want ...string) []target {
	var ts []target
	for _, n := range want {
		if slices.Contains(s.opt.targets, n) {
			ts = append(ts, s.targets[n])
		}
	}
	return ts
}

// latency interleaves blocks of sequential dial, 1-byte echo and close
// across the targets, after a discarded warm-up of each.
func (s *spawnRun) latency(ctx context.Context) error {
	ts := s.selected(spawnTargetNames...)
	if err := latencyWarmUp(ctx, s.prog, ts, s.sz.latencyWarmup); err != nil {
		return err
	}
	warm0 := s.relay.warmSplices(ctx) // after the warm-up: only measured dials count
	samples, errs, first, err := latencySamples(ctx, s.prog, ts, s.sz.latencyDials,
		fmt.Sprintf("latency: %d sequential dials per target, interleaved", s.sz.latencyDials))
	if err != nil {
		return err
	}
	warm1 := s.relay.warmSplices(ctx)
	for i, t := range ts {
		run := latencyRun{Target: t.name, latencyStats: summarize(samples[i], errs[i]), FirstError: first[i]}
		if t.name == targetRelayWarm {
			run.WarmPool, run.WarmHits = s.opt.warm, -1
			if warm0 >= 0 && warm1 >= 0 {
				run.WarmHits = warm1 - warm0
			}
		}
		s.Errors["latency"] += int64(errs[i])
		s.Latency = append(s.Latency, run)
	}
	return nil
}

// rate runs dial/echo/close loops at each concurrency, the targets taking
// turns slice by slice; each target's figure is its median slice.
func (s *spawnRun) rate(ctx context.Context) error {
	ts := s.selected("direct", "proxy", "cold")
	for _, t := range ts {
		s.prog.step("rate: warm-up, %d dials to %s", rateWarmup, t.name)
		if err := warmUp(ctx, t, rateWarmup); err != nil {
			return err
		}
	}
	runs, errs, err := rateTurns(ctx, s.prog, ts, s.sz)
	s.Rate = append(s.Rate, runs...)
	s.Errors["rate"] += errs
	return err
}

// rateTurns runs dial/echo/close loops on ts at each concurrency of sz,
// the targets taking turns slice by slice; each run's figure is its
// median slice. It returns the runs and their errors summed.
func rateTurns(ctx context.Context, prog *progress, ts []target, sz sizes) ([]rateStats, int64, error) {
	var all []rateStats
	var errs int64
	slice := sz.rateFor / time.Duration(sz.rateSlices)
	for _, c := range sz.conc {
		runs := make([]rateStats, len(ts))
		for i, t := range ts {
			runs[i] = rateStats{Target: t.name, Concurrency: c}
		}
		for sl := range sz.rateSlices {
			for i, t := range ts {
				label := fmt.Sprintf("rate: %s, c=%d, slice %d/%d", t.name, c, sl+1, sz.rateSlices)
				prog.step("%s, %v", label, slice)
				runs[i].add(measureRate(ctx, t.name, t.dial, c, slice, prog, label))
				if err := ctx.Err(); err != nil {
					return all, errs, err
				}
			}
		}
		for i := range runs {
			runs[i].PerSecond = median(runs[i].Slices)
			errs += runs[i].Errors
		}
		all = append(all, runs...)
	}
	return all, errs, nil
}

// bulk sends a fixed byte count through each path into a counting sink,
// on 1 and 8 streams, the targets taking turns each repetition.
func (s *spawnRun) bulk(ctx context.Context) error {
	var ts []target
	for _, n := range []string{"direct", "proxy", "cold"} {
		if slices.Contains(s.opt.targets, n) {
			ts = append(ts, s.targets[n+" sink"])
		}
	}
	chunk := bulkPattern()
	for _, streams := range bulkStreams {
		runs, err := bulkRuns(ctx, s.prog, ts, streams, s.sz.bulkBytes, s.sz.bulkReps, chunk)
		if err != nil {
			return err
		}
		for _, r := range runs {
			s.Errors["bulk"] += int64(r.Errors)
		}
		s.Bulk = append(s.Bulk, runs...)
	}
	return nil
}

// idle holds N connections through each path in turn and reads the
// footprint of the process in the middle from /proc before and after.
func (s *spawnRun) idle(ctx context.Context, pids map[string]int) error {
	n := s.sz.idlePairs
	procName := map[string]string{"direct": "servers (the echo server's side)", "proxy": "proxy", "cold": "relaynode"}
	for _, name := range []string{"cold", "proxy", "direct"} {
		if !slices.Contains(s.opt.targets, name) {
			continue
		}
		t := s.targets[name]
		before, err := settleProc(ctx, pids[name])
		if err != nil {
			return err
		}
		s.prog.step("idle: holding %d connections through %s", n, t.name)
		conns, err := holdConns(ctx, t.dial, n, s.prog, "idle: "+t.name)
		if err != nil {
			s.Errors["idle"]++
			return err
		}
		after, err := settleProc(ctx, pids[name])
		closeAll(conns)
		if err != nil {
			return err
		}
		per := procFigures{RSSBytes: (after.RSSBytes - before.RSSBytes) / float64(n), FDs: (after.FDs - before.FDs) / float64(n)}
		s.Idle = append(s.Idle, spawnIdle{Target: t.name, Process: procName[name], Conns: n, Before: before, After: after, PerConn: per})
		// Let the closed connections go before the next path is measured.
		if _, err := settleProc(ctx, pids[name]); err != nil {
			return err
		}
	}
	return nil
}

// readCounters reads the relay's dial and refusal counters from its
// /metrics.
func (s *spawnRun) readCounters(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ms, err := scrape(ctx, s.relay.metrics)
	if err != nil {
		s.Notes = append(s.Notes, "relay counters unknown: "+err.Error())
		s.Refusals = -1
		return
	}
	s.Dials = map[string]int64{}
	for _, m := range ms {
		switch m.name {
		case "relay_dials_total":
			s.Dials[m.labels["outcome"]] = int64(m.value)
		case "relay_refusals_total":
			if m.value > 0 {
				s.Refusals += int64(m.value)
				s.RefusalsBy = append(s.RefusalsBy, fmt.Sprintf("%s %s %s: %.0f", m.labels["route"], m.labels["status"], m.labels["reason"], m.value))
			}
		}
	}
}

// Targets of the project, each against the bare proxy measured in the
// same run.
const (
	goalWarmP50  = 1.0  // warm dial p50 ≤ this × proxy p50
	goalColdP50  = 1.6  // cold dial p50 ≤ this × proxy p50
	goalP99      = 2.0  // warm and cold p99 ≤ this × proxy p99
	goalRate     = 0.8  // relay dial rate at goalRateConc ≥ this × proxy
	goalRateConc = 32   // the concurrency of the rate target
	goalBulk     = 0.95 // bulk MB/s, 1 and 8 streams, ≥ this × proxy
	goalIdleMem  = 8 << 10
	goalIdleFDs  = 2
)

// lat returns the latency run of target, if measured.
func (s *spawnRun) lat(target string) (latencyRun, bool) { return latencyOf(s.Latency, target) }

// rateOf returns target's dials per second at c, or NaN.
func (s *spawnRun) rateOf(target string, c int) float64 { return perSecond(s.Rate, target, c) }

// latencyOf returns target's run among runs, if it has samples.
func latencyOf(runs []latencyRun, target string) (latencyRun, bool) {
	for _, r := range runs {
		if r.Target == target {
			return r, r.N > 0
		}
	}
	return latencyRun{}, false
}

// perSecond returns target's dials per second at c among runs, or NaN.
func perSecond(runs []rateStats, target string, c int) float64 {
	if r, ok := rateAt(runs, target, c); ok {
		return r.PerSecond
	}
	return math.NaN()
}

// bulkOf returns target's median MB/s on streams, or NaN.
func (s *spawnRun) bulkOf(target string, streams int) float64 {
	for _, r := range s.Bulk {
		if r.Target == target && r.Streams == streams && len(r.MBps) > 0 {
			return r.MedianMBps
		}
	}
	return math.NaN()
}

// idleOf returns target's per-connection footprint, if measured.
func (s *spawnRun) idleOf(target string) (procFigures, bool) {
	for _, r := range s.Idle {
		if r.Target == target {
			return r.PerConn, true
		}
	}
	return procFigures{}, false
}

// checks evaluates the targets.
func (s *spawnRun) checks() {
	add := func(metric, goal string, v float64, met func(float64) bool) {
		c := spawnCheck{Metric: metric, Goal: goal, Value: v, Shown: ratio(v)}
		c.Met = !math.IsNaN(v) && met(v)
		s.Checks = append(s.Checks, c)
	}
	le := func(lim float64) func(float64) bool { return func(v float64) bool { return v <= lim } }
	ge := func(lim float64) func(float64) bool { return func(v float64) bool { return v >= lim } }
	// q returns a latency figure of target, NaN when it was not measured.
	q := func(target string, f func(latencyRun) float64) float64 {
		if r, ok := s.lat(target); ok {
			return f(r)
		}
		return math.NaN()
	}
	p50 := func(r latencyRun) float64 { return r.P50US }
	p99 := func(r latencyRun) float64 { return r.P99US }
	add("warm dial p50", fmt.Sprintf("≤ %.1f× proxy", goalWarmP50), div(q(targetRelayWarm, p50), q(targetProxy, p50)), le(goalWarmP50))
	add("cold dial p50", fmt.Sprintf("≤ %.1f× proxy", goalColdP50), div(q(targetRelayCold, p50), q(targetProxy, p50)), le(goalColdP50))
	add("warm dial p99", fmt.Sprintf("≤ %.0f× proxy p99", goalP99), div(q(targetRelayWarm, p99), q(targetProxy, p99)), le(goalP99))
	add("cold dial p99", fmt.Sprintf("≤ %.0f× proxy p99", goalP99), div(q(targetRelayCold, p99), q(targetProxy, p99)), le(goalP99))
	add(fmt.Sprintf("dial rate c=%d", goalRateConc), fmt.Sprintf("≥ %.1f× proxy", goalRate),
		div(s.rateOf(targetRelayCold, goalRateConc), s.rateOf(targetProxy, goalRateConc)), ge(goalRate))
	for _, st := range bulkStreams {
		add(fmt.Sprintf("bulk %d stream%s", st, plural(st)), fmt.Sprintf("≥ %.2f× proxy", goalBulk),
			div(s.bulkOf(targetRelayCold, st), s.bulkOf(targetProxy, st)), ge(goalBulk))
	}
	mem, fds := math.NaN(), math.NaN()
	if f, ok := s.idleOf(targetRelayCold); ok {
		mem, fds = f.RSSBytes, f.FDs
	}
	s.Checks = append(s.Checks,
		spawnCheck{Metric: "idle pair memory (relay RSS)", Goal: fmt.Sprintf("≤ %d KiB", goalIdleMem>>10), Value: mem, Shown: fmtKiB(mem), Met: mem <= goalIdleMem},
		spawnCheck{Metric: "idle pair fds (relay)", Goal: fmt.Sprintf("≤ %d", goalIdleFDs), Value: fds, Shown: fmt.Sprintf("%.2f", fds), Met: fds <= goalIdleFDs+0.05})
}

// div returns a/b, or NaN when either is unknown or b is not positive
// (a baseline process whose RSS shrank while it held connections).
func div(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return math.NaN()
	}
	return a / b
}

// ratio formats a ratio, or "—" when unknown.
func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// report prints the table: every figure of the relay beside both
// baselines and as ratios to each, then the targets, errors and refusals.
func (s *spawnRun) report(w io.Writer) {
	fmt.Fprintf(w, "relaybench -spawn: relaynode pid %d, servers pid %d, proxy pid %d; %s, %d CPUs, %s\n",
		s.PIDs["relay"], s.PIDs["servers"], s.PIDs["proxy"], s.Machine.GoVersion, s.Machine.NumCPU, runtime.GOOS+"/"+runtime.GOARCH)
	flags := "(defaults)"
	if len(s.RelayFlags) > 0 {
		flags = strings.Join(s.RelayFlags, " ")
	}
	fmt.Fprintf(w, "relaynode flags beyond -listen and -admin-listen: %s\ncommand: %s\n\n", flags, s.Command)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tdirect\tproxy\trelay cold\trelay warm\tcold/direct\tcold/proxy\twarm/direct\twarm/proxy\t")
	row := func(metric string, d, p, c, wm float64, f func(float64) string) {
		cell := func(v float64) string {
			if math.IsNaN(v) {
				return "—"
			}
			return f(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", metric, cell(d), cell(p), cell(c), cell(wm),
			ratio(div(c, d)), ratio(div(c, p)), ratio(div(wm, d)), ratio(div(wm, p)))
	}
	nan := math.NaN()
	if len(s.Latency) > 0 {
		get := func(t string, f func(latencyRun) float64) float64 {
			if r, ok := s.lat(t); ok {
				return f(r)
			}
			return nan
		}
		for _, q := range []struct {
			name string
			f    func(latencyRun) float64
		}{
			{"latency p50", func(r latencyRun) float64 { return r.P50US }},
			{"latency p99", func(r latencyRun) float64 { return r.P99US }},
			{"latency p999", func(r latencyRun) float64 { return r.P999US }},
		} {
			row(q.name, get(targetDirect, q.f), get(targetProxy, q.f), get(targetRelayCold, q.f), get(targetRelayWarm, q.f), fmtUS)
		}
	}
	for _, c := range s.sz.conc {
		if len(s.Rate) > 0 {
			row(fmt.Sprintf("rate c=%d (dials/s)", c), s.rateOf(targetDirect, c), s.rateOf(targetProxy, c), s.rateOf(targetRelayCold, c), nan, fmtRate)
		}
	}
	for _, st := range bulkStreams {
		if len(s.Bulk) > 0 {
			row(fmt.Sprintf("bulk %d stream%s", st, plural(st)), s.bulkOf(targetDirect, st), s.bulkOf(targetProxy, st), s.bulkOf(targetRelayCold, st), nan,
				func(v float64) string { return fmtMBps(v * 1e6) })
		}
	}
	if len(s.Idle) > 0 {
		f := func(t string, g func(procFigures) float64) float64 {
			if x, ok := s.idleOf(t); ok {
				return g(x)
			}
			return nan
		}
		rss := func(x procFigures) float64 { return x.RSSBytes }
		fds := func(x procFigures) float64 { return x.FDs }
		row("idle memory/pair (RSS)", f(targetDirect, rss), f(targetProxy, rss), f(targetRelayCold, rss), nan, fmtKiB)
		row("idle fds/pair", f(targetDirect, fds), f(targetProxy, fds), f(targetRelayCold, fds), nan, func(v float64) string { return fmt.Sprintf("%.2f", v) })
	}
	tw.Flush()
	if len(s.Idle) > 0 {
		fmt.Fprintln(w, "(idle: /proc of the process in the middle — relaynode, proxy — per held pair; for direct, the echo server's process per held connection)")
	}
	if r, ok := s.lat(targetRelayWarm); ok && r.WarmHits >= 0 {
		fmt.Fprintf(w, "relay warm: %d of %d measured dials went to a parked callback (warm pool K=%d)\n", r.WarmHits, r.N, r.WarmPool)
	}

	writeChecks(w, "targets (ratios to the bare proxy in this run):", s.Checks)
	writeErrors(w, spawnModes, s.Errors, s.Latency, s.Rate)
	for _, r := range s.Bulk {
		if r.FirstError != "" {
			fmt.Fprintf(w, "  bulk %s: %s\n", r.Target, r.FirstError)
		}
	}
	fmt.Fprintf(w, "refusals: %d (relay_refusals_total on the relay's /metrics)\n", s.Refusals)
	for _, r := range s.RefusalsBy {
		fmt.Fprintf(w, "  %s\n", r)
	}
	for _, x := range s.Warnings {
		fmt.Fprintf(w, "relay log: %s\n", x)
	}
	for _, x := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", x)
	}
}

// writeChecks prints the targets checked in a run under title, each with
// its status.
func writeChecks(w io.Writer, title string, checks []spawnCheck) {
	fmt.Fprintln(w, "\n"+title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range checks {
		status := "met"
		switch {
		case math.IsNaN(c.Value):
			status = "not measured"
		case !c.Met:
			status = "MISSED"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t\n", c.Metric, c.Goal, c.Shown, status)
	}
	tw.Flush()
}

// writeErrors prints the errors of a run by mode, in the order of modes,
// and the first error of each latency and rate run that had one.
func writeErrors(w io.Writer, modes []string, errs map[string]int64, lat []latencyRun, rate []rateStats) {
	var total int64
	var parts []string
	for _, m := range modes {
		if v, ok := errs[m]; ok {
			total += v
			parts = append(parts, fmt.Sprintf("%s %d", m, v))
		}
	}
	fmt.Fprintf(w, "\nerrors: %d (%s)\n", total, strings.Join(parts, ", "))
	for _, r := range lat {
		if r.FirstError != "" {
			fmt.Fprintf(w, "  latency %s: %s\n", r.Target, r.FirstError)
		}
	}
	for _, r := range rate {
		if r.FirstError != "" {
			fmt.Fprintf(w, "  rate %s c=%d: %s\n", r.Target, r.Concurrency, r.FirstError)
		}
	}
}

// write writes spawn.json into dir. NaNs become nulls.
func (s *spawnRun) write(dir string) error {
	return writeJSON(dir, "spawn.json", s, s.Checks, s.Latency)
}

// writeJSON writes v as file in dir. Before, it marks each check not
// measured with the value -1 (JSON has no NaN), and drops the latency
// runs' samples, which would dwarf the rest.
func writeJSON(dir, file string, v any, checks []spawnCheck, lat []latencyRun) error {
	for i := range checks {
		if math.IsNaN(checks[i].Value) {
			checks[i].Value = -1
		}
	}
	for i := range lat {
		lat[i].SamplesUS = nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", file, err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// restrictModes narrows o.modes to the modes a separate-process run
// (flag: -spawn or -cluster) has: all of them for -mode all (mode), and
// otherwise an error for any other mode asked for.
func restrictModes(o *options, flag, mode string, allowed []string) error {
	if mode == "all" {
		o.modes = allowed
	}
	for _, m := range o.modes {
		if !slices.Contains(allowed, m) {
			return fmt.Errorf("%s runs the modes %s, not %q", flag, strings.Join(allowed, ", "), m)
		}
	}
	return nil
}

// spawnOptions checks and completes the options of the spawn mode: mode
// is the -mode flag, relayFlags and targets the -relay-flags and -targets
// flags.
func spawnOptions(o options, mode, relayFlags, targets string) (options, error) {
	if o.relay != "" || o.admin != "" {
		return options{}, errors.New("-spawn starts its own relay: drop -relay and -admin")
	}
	if err := restrictModes(&o, "-spawn", mode, spawnModes); err != nil {
		return options{}, err
	}
	o.relayFlags = strings.Fields(relayFlags)
	for _, t := range strings.Split(targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(spawnTargetNames, t) {
			return options{}, fmt.Errorf("-targets: unknown path %q (want %s)", t, strings.Join(spawnTargetNames, ", "))
		}
		if !slices.Contains(o.targets, t) {
			o.targets = append(o.targets, t)
		}
	}
	return o, nil
}

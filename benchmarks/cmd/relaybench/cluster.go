package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// The cluster mode's targets: both dial the one echo server, registered
// at node 1, through node 1 (same node) or node 2 (cross node: the dial
// is notified to node 1 over the cluster port, and the server calls back
// to node 2, which splices).
const (
	targetSameNode  = "same node"
	targetCrossNode = "cross node"
)

// goalCrossP50 and goalCrossP50Stretch bound the cross-node dial's p50 as
// a multiple of the same-node dial's in the same run: the cross-node dial
// adds one control message between nodes and no byte copy.
const (
	goalCrossP50        = 1.3
	goalCrossP50Stretch = 1.2
)

// clusterNodes is how many relay nodes the cluster mode starts.
const clusterNodes = 2

// clusterLeaseTTL is the nodes' lease in the cluster mode: short, since
// nothing is killed, but above the renewal jitter of a loaded machine.
const clusterLeaseTTL = 5 * time.Second

// clusterRun is the cluster mode's state and results; it is also what
// cluster.json holds.
type clusterRun struct {
	Command string           `json:"command"`
	Machine machine          `json:"machine"`
	PIDs    map[string]int   `json:"pids"`
	Latency []latencyRun     `json:"latency,omitempty"`
	Rate    []rateStats      `json:"rate,omitempty"`
	Checks  []spawnCheck     `json:"checks"`
	Errors  map[string]int64 `json:"errors"`
	// NotifyMeanUS is the mean round trip of the Notifies node 2 sent
	// node 1 over the run (its relay_cluster_notify_seconds): the control
	// hop a cross-node dial adds.
	NotifyMeanUS float64            `json:"notify_mean_us"`
	Notifies     int64              `json:"notifies"`
	Warnings     []string           `json:"relay_warnings,omitempty"`
	Seconds      map[string]float64 `json:"mode_seconds"`

	opt options
	sz  sizes
}

// runCluster is the cluster mode: an etcd, two relay nodes sharing it and
// the echo server each in its own process, the probe in this one. It
// measures the same-node and the cross-node dial, interleaved.
func runCluster(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	s := &clusterRun{
		Command: o.command, Machine: describeMachine(),
		PIDs: map[string]int{}, Errors: map[string]int64{}, Seconds: map[string]float64{},
		opt: o, sz: o.sizes(),
	}
	prog := newProgress(stderr)
	dir, err := os.MkdirTemp("", "relaybench-cluster-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := o.relayBin
	if bin == "" {
		prog.step("cluster: go build %s", procs.RelayPackage)
		if bin, err = procs.Build(ctx, dir, false); err != nil {
			return err
		}
	}
	etcdBin, err := etcdBinary(o.etcdBin)
	if err != nil {
		return err
	}
	prog.step("cluster: starting etcd")
	etcd, err := procs.StartEtcd(ctx, procs.EtcdConfig{Bin: etcdBin, DataDir: filepath.Join(dir, "etcd")})
	if err != nil {
		return err
	}
	s.PIDs["etcd"] = etcd.PID()
	var nodes []*procs.Node
	var servers *childProc
	defer func() {
		errs := []error{err, servers.stop(5 * time.Second)}
		for _, n := range nodes {
			errs = append(errs, n.Term(relayGrace))
		}
		errs = append(errs, etcd.Close())
		err = errors.Join(errs...)
	}()
	cfgs := make([]procs.NodeConfig, clusterNodes)
	logs := make([]*relayLog, clusterNodes)
	for i := range cfgs {
		logs[i] = new(relayLog)
		cfgs[i] = procs.NodeConfig{
			ID: "n" + strconv.Itoa(i+1), Etcd: etcd.Endpoint(), LeaseTTL: clusterLeaseTTL,
			Args: o.relayFlags, ReadyBound: childStartTimeout, LogLine: logs[i].line,
		}
	}
	if nodes, err = procs.StartNodes(ctx, bin, cfgs...); err != nil {
		return err
	}
	var addrs, admins []string
	for _, n := range nodes {
		s.PIDs[n.ID] = n.PID()
		addrs = append(addrs, n.Addr)
		admins = append(admins, n.AdminAddr)
		prog.step("cluster: node %s pid %d on %s", n.ID, n.PID(), n.Addr)
	}
	prefix := "relaybench-" + randomID()
	servers, _, err = startChild(roleServers, childRelayEnv+"="+addrs[0], childPrefixEnv+"="+prefix, childWarmEnv+"=0")
	if err != nil {
		return err
	}
	s.PIDs["servers"] = servers.PID()
	targets := []target{
		{targetSameNode, relayDialer(newDialer(addrs[0]), prefix+"-echo")},
		{targetCrossNode, relayDialer(newDialer(addrs[1]), prefix+"-echo")},
	}
	// Node 2 learns the name from its watch of the directory, soon after
	// node 1 published it: wait for the first cross-node round trip.
	if err := untilRoundTrip(ctx, targets[1], 10*time.Second); err != nil {
		return err
	}

	var errs []error
	for _, m := range o.modes {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("interrupted before %s: %w", m, ctx.Err()))
			break
		}
		start := time.Now()
		s.Errors[m] += 0
		var merr error
		switch m {
		case "latency":
			merr = s.latency(ctx, prog, targets)
		case "rate":
			merr = s.rate(ctx, prog, targets)
		}
		s.Seconds[m] = time.Since(start).Seconds()
		if merr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, merr))
			s.Errors[m]++
		}
	}
	prog.done()
	if err := s.readNotify(ctx, admins[1]); err != nil {
		errs = append(errs, err)
	}
	for i, n := range nodes {
		stopErr := n.Term(relayGrace)
		if c, first := logs[i].summary(); c > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("node %s: %d warning or error lines", n.ID, c))
			s.Warnings = append(s.Warnings, first...)
		}
		errs = append(errs, stopErr)
	}
	nodes = nil
	s.checks()
	s.report(stdout)
	if o.out != "" {
		if werr := s.write(o.out); werr != nil {
			errs = append(errs, werr)
		} else {
			fmt.Fprintf(stdout, "\nwrote %s\n", filepath.Join(o.out, "cluster.json"))
		}
	}
	return errors.Join(errs...)
}

// latency interleaves blocks of sequential round trips on both targets.
func (s *clusterRun) latency(ctx context.Context, prog *progress, ts []target) error {
	if err := latencyWarmUp(ctx, prog, ts, s.sz.latencyWarmup); err != nil {
		return err
	}
	samples, errs, first, err := latencySamples(ctx, prog, ts, s.sz.latencyDials,
		fmt.Sprintf("latency: %d sequential dials per target, interleaved", s.sz.latencyDials))
	if err != nil {
		return err
	}
	for i, t := range ts {
		s.Latency = append(s.Latency, latencyRun{Target: t.name, latencyStats: summarize(samples[i], errs[i]), FirstError: first[i]})
		s.Errors["latency"] += int64(errs[i])
	}
	return nil
}

// rate measures both targets' dial rate at each concurrency, in turns.
func (s *clusterRun) rate(ctx context.Context, prog *progress, ts []target) error {
	runs, errs, err := rateTurns(ctx, prog, ts, s.sz)
	s.Rate = append(s.Rate, runs...)
	s.Errors["rate"] += errs
	return err
}

// readNotify reads the Notify round trips of the node at admin from its
// /metrics.
func (s *clusterRun) readNotify(ctx context.Context, admin string) error {
	ms, err := scrape(ctx, "http://"+admin+"/metrics")
	if err != nil {
		return fmt.Errorf("notify round trips: %w", err)
	}
	var sum float64
	for _, m := range ms {
		switch m.name {
		case "relay_cluster_notify_seconds_sum":
			sum = m.value
		case "relay_cluster_notify_seconds_count":
			s.Notifies = int64(m.value)
		}
	}
	if s.Notifies > 0 {
		s.NotifyMeanUS = sum / float64(s.Notifies) * 1e6
	}
	return nil
}

// lat returns target's latency run, if measured.
func (s *clusterRun) lat(target string) (latencyRun, bool) { return latencyOf(s.Latency, target) }

// rateOf returns target's dials per second at c, or NaN.
func (s *clusterRun) rateOf(target string, c int) float64 { return perSecond(s.Rate, target, c) }

// checks evaluates the cluster targets: cross-node p50 against same-node
// p50, at the target and at the stretch.
func (s *clusterRun) checks() {
	v := math.NaN()
	same, ok1 := s.lat(targetSameNode)
	cross, ok2 := s.lat(targetCrossNode)
	if ok1 && ok2 {
		v = div(cross.P50US, same.P50US)
	}
	for _, g := range []struct {
		name string
		lim  float64
	}{{"cross-node dial p50", goalCrossP50}, {"cross-node dial p50 (stretch)", goalCrossP50Stretch}} {
		s.Checks = append(s.Checks, spawnCheck{
			Metric: g.name, Goal: fmt.Sprintf("≤ %.1f× same node", g.lim),
			Value: v, Shown: ratio(v), Met: !math.IsNaN(v) && v <= g.lim,
		})
	}
}

// report prints the table of both targets and their ratio, then the
// targets and errors.
func (s *clusterRun) report(w io.Writer) {
	fmt.Fprintf(w, "relaybench -cluster: %d relaynode processes sharing one etcd (pids n1 %d, n2 %d, etcd %d), servers pid %d; %s, %d CPUs, %s\n",
		clusterNodes, s.PIDs["n1"], s.PIDs["n2"], s.PIDs["etcd"], s.PIDs["servers"], s.Machine.GoVersion, s.Machine.NumCPU, runtime.GOOS+"/"+runtime.GOARCH)
	fmt.Fprintf(w, "the echo server is registered at n1; same node dials n1, cross node dials n2\ncommand: %s\n\n", s.Command)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tsame node\tcross node\tcross/same\t")
	row := func(metric string, a, b float64, f func(float64) string) {
		cell := func(v float64) string {
			if math.IsNaN(v) {
				return "—"
			}
			return f(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", metric, cell(a), cell(b), ratio(div(b, a)))
	}
	get := func(t string, f func(latencyRun) float64) float64 {
		if r, ok := s.lat(t); ok {
			return f(r)
		}
		return math.NaN()
	}
	if len(s.Latency) > 0 {
		for _, q := range []struct {
			name string
			f    func(latencyRun) float64
		}{
			{"latency p50", func(r latencyRun) float64 { return r.P50US }},
			{"latency p99", func(r latencyRun) float64 { return r.P99US }},
			{"latency p999", func(r latencyRun) float64 { return r.P999US }},
		} {
			row(q.name, get(targetSameNode, q.f), get(targetCrossNode, q.f), fmtUS)
		}
	}
	if len(s.Rate) > 0 {
		for _, c := range s.sz.conc {
			row(fmt.Sprintf("rate c=%d (dials/s)", c), s.rateOf(targetSameNode, c), s.rateOf(targetCrossNode, c), fmtRate)
		}
	}
	tw.Flush()
	if s.Notifies > 0 {
		fmt.Fprintf(w, "Notify round trip n2 → n1 (sent, connect event queued at n1, answer back): mean %s over %d\n",
			fmtUS(s.NotifyMeanUS), s.Notifies)
	}
	writeChecks(w, "targets:", s.Checks)
	writeErrors(w, clusterModes, s.Errors, s.Latency, s.Rate)
	for _, x := range s.Warnings {
		fmt.Fprintf(w, "relay log: %s\n", x)
	}
}

// write writes cluster.json into dir.
func (s *clusterRun) write(dir string) error {
	return writeJSON(dir, "cluster.json", s, s.Checks, s.Latency)
}

// clusterModes are the modes the cluster mode runs, in order.
var clusterModes = []string{"latency", "rate"}

// etcdBinary returns the etcd server to run (procs.EtcdBinary): the
// -etcd-bin flag, $ETCD_BIN, /usr/bin/etcd (Debian's etcd-server) or etcd
// on $PATH.
func etcdBinary(flag string) (string, error) {
	bin, err := procs.EtcdBinary(flag)
	if err != nil {
		return "", fmt.Errorf("%w, or pass -etcd-bin", err)
	}
	return bin, nil
}

// untilRoundTrip retries a round trip on t until one succeeds, for at
// most bound.
func untilRoundTrip(ctx context.Context, t target, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		_, err := roundTrip(ctx, t.dial)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: no round trip within %v: %w", t.name, bound, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterOptions checks and completes the options of the cluster mode:
// mode is the -mode flag and relayFlags the -relay-flags flag, given to
// every node.
func clusterOptions(o options, mode, relayFlags string) (options, error) {
	if o.relay != "" || o.admin != "" || o.spawn {
		return options{}, errors.New("-cluster starts its own nodes: drop -relay, -admin and -spawn")
	}
	if err := restrictModes(&o, "-cluster", mode, clusterModes); err != nil {
		return options{}, err
	}
	o.relayFlags = strings.Fields(relayFlags)
	return o, nil
}

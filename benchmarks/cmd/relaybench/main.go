package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// main runs the command until it ends or SIGINT or SIGTERM interrupts it;
// an interrupted run still prints what it measured.
func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// allModes are the modes in the order -mode all runs them.
var allModes = []string{"latency", "rate", "bulk", "idle", "listeners", "mailbox"}

// namedModes run only when -mode names them, after allModes.
var namedModes = []string{"stalled"}

// options are the parsed command line.
type options struct {
	modes      []string      // from allModes, in their order
	relay      string        // -relay: a running relay's address; "" starts one in process
	admin      string        // -admin: the running relay's admin address, for /metrics
	out        string        // -out: directory for results.json and the plots
	duration   time.Duration // each fixed-time rate measurement
	n          int           // 0: each mode's own default
	conc       []int         // concurrencies of the rate mode
	warm       int           // warm pool size of the warm latency target
	bulkMiB    int           // MiB carried per bulk run, split over its streams
	quick      bool
	command    string        // the command line, as a shell would take it
	spawn      bool          // -spawn: the relay binary and the servers in their own processes
	relayFlags []string      // -relay-flags: extra flags of the spawned relaynode
	relayBin   string        // -relay-bin: a built relaynode to spawn instead of building one
	targets    []string      // -targets: the spawn mode's paths, from spawnTargetNames
	pause      time.Duration // -pause: the spawn mode's wait before measuring
	cluster    bool          // -cluster: two relay nodes sharing an etcd, same node against cross node
	etcdBin    string        // -etcd-bin: the etcd server the cluster mode runs
	earlyData  bool          // -early-data: relay dials return before the relay's answer
	notes      []string      // for the report: what the flags changed
}

// dialOptions are the endpoints options of the bench's relay dialers.
func (o options) dialOptions() []endpoints.Option {
	if o.earlyData {
		return []endpoints.Option{endpoints.WithEarlyData()}
	}
	return nil
}

// sizes are the counts and lengths the modes use: the flags, with each
// mode's default where a flag is left at zero, scaled down by -quick.
type sizes struct {
	latencyDials  int           // measured sequential dials per latency target
	latencyWarmup int           // discarded dials per target before measuring
	rateFor       time.Duration // each fixed-time rate run
	rateSlices    int           // turns a rate-mode run is cut into
	conc          []int
	bulkBytes     int64 // per run, split evenly over the run's streams
	bulkReps      int   // runs per target and stream count; the median is kept
	idlePairs     int
	idleWarmup    int // relayed dials before the idle measurement, to fill the relay's bounded caches
	listeners     int // the largest number of live registrations
	mailboxDials  int // sequential dials per mailbox setting, for p99
	stalledDials  int // healthy dials before, and at most during, the stalled flood
}

// sizes returns the sizes the options ask for.
func (o options) sizes() sizes {
	s := sizes{
		latencyDials: 3000, latencyWarmup: 200,
		rateFor: 3 * time.Second, rateSlices: 3, conc: o.conc,
		bulkBytes: 1 << 30, bulkReps: 3,
		idlePairs: 1000, idleWarmup: 4096,
		listeners:    1000,
		mailboxDials: 1000, stalledDials: 400,
	}
	if o.quick {
		s = sizes{
			latencyDials: 300, latencyWarmup: 30,
			rateFor: 300 * time.Millisecond, rateSlices: 1, conc: o.conc,
			bulkBytes: 32 << 20, bulkReps: 1,
			idlePairs: 100, idleWarmup: 100,
			listeners:    100,
			mailboxDials: 100, stalledDials: 100,
		}
	}
	if o.n > 0 {
		s.latencyDials, s.idlePairs, s.listeners, s.mailboxDials, s.stalledDials = o.n, o.n, o.n, o.n, o.n
		s.latencyWarmup = min(s.latencyWarmup, max(o.n/10, 5))
		s.idleWarmup = min(s.idleWarmup, o.n)
	}
	if o.duration > 0 {
		s.rateFor = o.duration
	}
	if o.bulkMiB > 0 {
		s.bulkBytes = int64(o.bulkMiB) << 20
	}
	return s
}

// usageHead is the -h text above the flags.
const usageHead = `Usage: relaybench [flags]

Measures a clusterlink relay against a direct TCP baseline and a bare splice
proxy in the same run, and prints each figure beside its target. With -spawn
it measures the deployment: the relaynode binary, the servers and the proxy
each in its own process (the recipe of docs/BENCHMARKS.md). With -cluster it
measures a cluster: two relaynode processes sharing an etcd, a dial through
the node that holds the name against one through the other node. Otherwise,
and without -relay, it starts a relay in process on 127.0.0.1:0 (for
profiling).

Modes (-mode, comma-separated, or all):
  latency    sequential dial, 1-byte echo, close: p50/p99/p999/mean for direct,
             proxy, relay cold and relay warm (-warm parked callbacks)
  rate       dial/echo/close loops for -duration at each -conc: dials/s
  bulk       1 and 8 streams into a counting sink: MB/s, relay vs proxy/direct
  idle       hold N spliced pairs: relay memory and fds per pair
  listeners  hold N registrations: relay memory each; dial rate with N live
  mailbox    dial rate and p99 per actor-kind mailbox setting (in process only)
  stalled    a healthy name's dial p50/p99 before and during a flood of dials at
             a listener that never reads its stream (in process only; not in all)

Examples:
  go run ./benchmarks/cmd/relaybench -spawn -out /tmp/rb
  go run ./benchmarks/cmd/relaybench -spawn -relay-flags '-mailbox-pending bounded:64' -mode rate -conc 32
  go run ./benchmarks/cmd/relaybench -cluster -out /tmp/rb
  go run ./benchmarks/cmd/relaybench -quick -out /tmp/rb
  go run ./benchmarks/cmd/relaybench -mode latency,rate -conc 1,32 -duration 5s
  go run ./benchmarks/cmd/relaybench -relay 127.0.0.1:8080 -admin 127.0.0.1:9090

Flags:
`

// parseFlags parses args into options. -h prints the usage and returns
// flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	var o options
	mode := fs.String("mode", "all", "`modes` to run, comma-separated: latency, rate, bulk, idle, listeners, mailbox, stalled, or all\n(all is every mode but stalled)")
	fs.StringVar(&o.relay, "relay", "", "`host:port` of a running relaynode to measure instead of an in-process relay;\nthe bench registers its own echo and sink servers on it (mailbox mode is skipped)")
	fs.StringVar(&o.admin, "admin", "", "admin `address` of the -relay (host:port or URL), to read its /metrics:\nrelay memory and fds for idle and listeners, and its dial and refusal counters")
	fs.StringVar(&o.out, "out", "", "`dir`ectory to write results.json and the SVG plots into (created if missing)")
	fs.DurationVar(&o.duration, "duration", 0, "length of each fixed-time rate measurement (rate, listeners, mailbox); the rate mode\ncuts it into 3 slices that take turns across targets, and keeps the median (default 3s; -quick 300ms, 1 slice)")
	fs.IntVar(&o.n, "n", 0, "`count` for latency dials per target, idle pairs, live registrations and each mailbox\nsetting's p99 dials (default 3000, 1000, 1000, 1000; -quick 300, 100, 100, 100)")
	concs := fs.String("conc", "1,8,32,64", "comma-separated `list` of concurrent loops for the rate mode; 32 is the one with a target")
	fs.IntVar(&o.warm, "warm", 4, "warm pool size `K` (endpoints.WithWarmPool) of the warm latency target")
	fs.IntVar(&o.bulkMiB, "bulk-mib", 0, "`MiB` carried by each bulk run, split evenly over its streams (default 1024; -quick 32)")
	fs.BoolVar(&o.earlyData, "early-data", false, "relay dials use endpoints.WithEarlyData: Dial returns once the request is written,\nand the echo byte goes out behind it")
	fs.BoolVar(&o.quick, "quick", false, "a fast smoke run: small counts and short runs")
	fs.BoolVar(&o.spawn, "spawn", false, "measure the deployment: build relaynode and run it as its own process with its default\nflags, the echo and sink servers (endpoints) in a second process and the bare proxy in a\nthird; modes latency, rate, bulk and idle (-mode all is those four)")
	fs.DurationVar(&o.pause, "pause", 0, "with -spawn, wait this long after the processes start (their pids are on stderr)\nbefore measuring: time to attach strace or perf")
	relayFlags := fs.String("relay-flags", "", "extra `flags` for the spawned relaynode, space-separated (with -spawn)")
	fs.StringVar(&o.relayBin, "relay-bin", "", "a built relaynode `binary` to spawn instead of building one (with -spawn)")
	fs.BoolVar(&o.cluster, "cluster", false, "measure a cluster: an etcd and two relaynode processes sharing it, the echo server\nregistered at the first; same-node against cross-node dial latency and rate (modes latency\nand rate; -mode all is both)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "the etcd server `binary` of -cluster (default $ETCD_BIN, /usr/bin/etcd, or etcd on $PATH)")
	targets := fs.String("targets", strings.Join(spawnTargetNames, ","), "the spawn mode's `paths`, comma-separated: direct, proxy, cold, warm (a subset is for profiling one path)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	var err error
	if o.modes, err = parseModes(*mode); err != nil {
		return options{}, err
	}
	if o.conc, err = parseConc(*concs); err != nil {
		return options{}, err
	}
	switch {
	case o.n < 0:
		return options{}, fmt.Errorf("-n %d: want a positive count", o.n)
	case o.duration < 0:
		return options{}, fmt.Errorf("-duration %v: want a positive duration", o.duration)
	case o.warm < 0:
		return options{}, fmt.Errorf("-warm %d: want 0 or more", o.warm)
	case o.bulkMiB < 0:
		return options{}, fmt.Errorf("-bulk-mib %d: want a positive size", o.bulkMiB)
	case o.admin != "" && o.relay == "":
		return options{}, errors.New("-admin needs -relay: the in-process relay is measured directly")
	}
	o.command = commandLine(args)
	if o.cluster {
		return clusterOptions(o, *mode, *relayFlags)
	}
	if o.etcdBin != "" {
		return options{}, errors.New("-etcd-bin needs -cluster")
	}
	if o.spawn {
		return spawnOptions(o, *mode, *relayFlags, *targets)
	}
	if *relayFlags != "" || o.relayBin != "" {
		return options{}, errors.New("-relay-flags and -relay-bin need -spawn or -cluster")
	}
	if o.relay != "" && slices.Contains(o.modes, "stalled") {
		return options{}, errors.New("stalled mode needs the in-process relay (it sets the relay's socket buffers): drop -relay")
	}
	if o.relay != "" && slices.Contains(o.modes, "mailbox") {
		if *mode != "all" {
			return options{}, errors.New("mailbox mode needs the in-process relay (it starts a fresh relay per setting): drop -relay")
		}
		o.modes = slices.DeleteFunc(o.modes, func(m string) bool { return m == "mailbox" })
		o.notes = append(o.notes, "mailbox mode skipped: it needs the in-process relay (a fresh relay per setting)")
	}
	o.command = commandLine(args)
	return o, nil
}

// parseModes parses the -mode list into modes in allModes order.
func parseModes(s string) ([]string, error) {
	want := map[string]bool{}
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		switch {
		case m == "all":
			for _, a := range allModes {
				want[a] = true
			}
		case slices.Contains(allModes, m), slices.Contains(namedModes, m):
			want[m] = true
		default:
			return nil, fmt.Errorf("-mode: unknown mode %q (want %s or all)", m, strings.Join(slices.Concat(allModes, namedModes), ", "))
		}
	}
	var out []string
	for _, m := range slices.Concat(allModes, namedModes) {
		if want[m] {
			out = append(out, m)
		}
	}
	return out, nil
}

// parseConc parses the -conc list.
func parseConc(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 || c > 4096 {
			return nil, fmt.Errorf("-conc: %q is not a count in [1, 4096]", f)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

// commandLine renders the command as it could be typed again.
func commandLine(args []string) string {
	parts := []string{"go run ./benchmarks/cmd/relaybench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// run is the whole command: parse, measure, report. It returns after
// every server, relay and goroutine it started has ended.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return fmt.Errorf("create -out directory: %w", err)
		}
	}
	if o.cluster {
		return runCluster(ctx, o, stdout, stderr)
	}
	if o.spawn {
		return runSpawn(ctx, o, stdout, stderr)
	}
	b, err := newBench(ctx, o, stdout, stderr)
	if err != nil {
		return err
	}
	runErr := b.runModes(ctx)
	b.close(ctx)
	b.prog.done()
	b.report()
	if o.out != "" {
		if err := b.writeOut(o.out); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(b.written, ", "))
	}
	return runErr
}

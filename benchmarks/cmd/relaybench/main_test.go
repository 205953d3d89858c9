package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/actors"
)

// TestMain checks that no test leaves a goroutine behind. Run as a child
// of the spawn mode (the test binary re-executes itself), it is that
// child instead.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestQuickRun runs five modes with tiny sizes against an in-process
// relay and checks what they measured and wrote.
func TestQuickRun(t *testing.T) {
	const n = 20
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-quick", "-mode", "latency,rate,bulk,idle,listeners", "-n", "20", "-duration", "100ms",
		"-conc", "1,4", "-bulk-mib", "2", "-warm", "2", "-out", dir}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}

	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("results.json does not parse: %v", err)
	}
	if !strings.Contains(res.Command, "-bulk-mib 2") || res.Machine.NumCPU < 1 || res.Machine.GoVersion == "" {
		t.Errorf("header: command %q, machine %+v", res.Command, res.Machine)
	}

	if len(res.Latency) != 4 {
		t.Fatalf("%d latency targets, want 4", len(res.Latency))
	}
	for _, l := range res.Latency {
		if l.N+l.Errors != n || l.N == 0 || len(l.SamplesUS) != l.N {
			t.Errorf("latency %s: %d samples, %d errors, %d raw, want %d dials", l.Target, l.N, l.Errors, len(l.SamplesUS), n)
		}
		if !(l.MinUS > 0 && l.MinUS <= l.P50US && l.P50US <= l.P99US && l.P99US <= l.P999US && l.P999US <= l.MaxUS) {
			t.Errorf("latency %s: percentiles out of order: %+v", l.Target, l.latencyStats)
		}
	}

	if len(res.Rate) != 2*3 {
		t.Fatalf("%d rate runs, want 6 (2 concurrencies × 3 targets)", len(res.Rate))
	}
	for _, r := range res.Rate {
		if r.Dials <= 0 || r.PerSecond <= 0 {
			t.Errorf("rate %s c=%d: %d dials, %.0f/s", r.Target, r.Concurrency, r.Dials, r.PerSecond)
		}
	}

	if len(res.Bulk) != 2*3 {
		t.Fatalf("%d bulk runs, want 6 (2 stream counts × 3 targets)", len(res.Bulk))
	}
	for _, b := range res.Bulk {
		// Every run that counts was confirmed byte-exact by the sink.
		if b.Errors != 0 || len(b.MBps) != 1 || b.MedianMBps <= 0 {
			t.Errorf("bulk %s ×%d: %d errors (%s), %d runs", b.Target, b.Streams, b.Errors, b.FirstError, len(b.MBps))
		}
		if b.BytesPerStream*int64(b.Streams) != 2<<20 {
			t.Errorf("bulk %s ×%d: %d bytes per stream, want 2 MiB in all", b.Target, b.Streams, b.BytesPerStream)
		}
	}

	idle := res.Idle
	if idle == nil || idle.PerPair == nil || idle.Direct == nil || idle.Relayed == nil {
		t.Fatalf("idle: %+v", idle)
	}
	if idle.Direct.Sockets != 2*n {
		t.Errorf("idle: %v sockets for %d direct pairs, want %d", idle.Direct.Sockets, n, 2*n)
	}
	if idle.Relayed.Sockets < 4*n || idle.Relayed.Goroutines < n {
		t.Errorf("idle: relayed pairs added %v sockets and %v goroutines, want at least %d and %d", idle.Relayed.Sockets, idle.Relayed.Goroutines, 4*n, n)
	}

	ls := res.Listeners
	if ls == nil || ls.PerRegistration == nil || ls.Registrations != n-1 {
		t.Fatalf("listeners: %+v", ls)
	}
	if len(ls.Rates) != 4 || ls.Rates[0].Live != 1 || ls.Rates[1].Live != 1 || ls.Rates[2].Live != n/10 || ls.Rates[3].Live != n {
		t.Errorf("listeners: rates %+v, want N = 1, 1, %d, %d", ls.Rates, n/10, n)
	}
	for _, r := range ls.Rates {
		if r.Dials <= 0 {
			t.Errorf("listeners: no dial with %d live", r.Live)
		}
	}
	if len(res.Checks) == 0 {
		t.Error("no checks recorded")
	}
	for _, rc := range res.RelayCounters {
		if rc.Error != "" || rc.Dials["spliced"] <= 0 {
			t.Errorf("relay %s counters: %+v", rc.Relay, rc)
		}
	}

	out := stdout.String()
	for _, want := range []string{"MODE", "latency", "relay warm (K=2)", "bulk", "idle", "listeners", "checks:", "results.json"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"latency.svg", "rate.svg", "bulk.svg"} {
		checkSVG(t, filepath.Join(dir, name))
	}
	if _, err := os.Stat(filepath.Join(dir, "mailbox.svg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mailbox.svg written without the mailbox mode: %v", err)
	}
}

// checkSVG checks that path holds a well-formed SVG document with text.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("<svg")) || !bytes.Contains(data, []byte("</svg>")) || !bytes.Contains(data, []byte("<text")) {
		t.Errorf("%s: not an SVG with text: %.100s", path, data)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s: malformed XML: %v", path, err)
			return
		}
		// encoding/xml lets a repeated attribute pass; browsers refuse it.
		if se, ok := tok.(xml.StartElement); ok {
			seen := map[string]bool{}
			for _, a := range se.Attr {
				if seen[a.Name.Local] {
					t.Errorf("%s: <%s> repeats attribute %s", path, se.Name.Local, a.Name.Local)
					return
				}
				seen[a.Name.Local] = true
			}
		}
	}
}

// TestMailbox runs the first two settings of the sweep, each on a fresh
// relay.
func TestMailbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := parseFlags([]string{"-quick", "-mode", "mailbox", "-n", "10", "-duration", "100ms", "-warm", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	b, err := newBench(ctx, o, &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = b.runMailbox(ctx, mailboxSweep()[:2])
	b.close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.res.Mailbox) != 2 {
		t.Fatalf("%d mailbox runs, want 2", len(b.res.Mailbox))
	}
	for _, m := range b.res.Mailbox {
		if m.Rate.Dials <= 0 || m.Latency.N+m.Latency.Errors != 10 || m.Latency.N == 0 {
			t.Errorf("%s: %d dials at rate, %d timed, %d errors", m.name(), m.Rate.Dials, m.Latency.N, m.Latency.Errors)
		}
	}
	// The main relay and one per setting reported their counters.
	if len(b.res.RelayCounters) != 3 {
		t.Errorf("%d relays' counters, want 3", len(b.res.RelayCounters))
	}
}

// TestMailboxSweep checks the settings: the directory and pending kinds
// swept fully, the others once, nothing repeating a default except the
// two defaults rows.
func TestMailboxSweep(t *testing.T) {
	count := map[string]int{}
	for _, s := range mailboxSweep() {
		count[s.Kind]++
		if s.Kind == "defaults" {
			if s.mbs != actors.DefaultMailboxes() {
				t.Errorf("%s: %+v, want the defaults", s.name(), s.mbs)
			}
			continue
		}
		if s.mbs == actors.DefaultMailboxes() {
			t.Errorf("%s repeats the defaults", s.name())
		}
	}
	want := map[string]int{"defaults": 2, "directory": 3, "pending": 3, "listener": 1, "pair": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s settings, want %d", count[k], k, n)
		}
	}
}

// TestParseFlags checks the modes each command line selects and the
// errors of bad ones.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		modes   string
	}{
		{args: nil, modes: "latency,rate,bulk,idle,listeners,mailbox"},
		{args: []string{"-mode", "rate,latency"}, modes: "latency,rate"},
		{args: []string{"-mode", "stalled,latency"}, modes: "latency,stalled"},
		{args: []string{"-relay", "127.0.0.1:1", "-mode", "stalled"}, wantErr: "in-process relay"},
		{args: []string{"-relay", "127.0.0.1:1"}, modes: "latency,rate,bulk,idle,listeners"},
		{args: []string{"-relay", "127.0.0.1:1", "-mode", "mailbox"}, wantErr: "in-process relay"},
		{args: []string{"-mode", "fast"}, wantErr: "unknown mode"},
		{args: []string{"-conc", "1,x"}, wantErr: "-conc"},
		{args: []string{"-admin", "127.0.0.1:2"}, wantErr: "-admin needs -relay"},
		{args: []string{"extra"}, wantErr: "unexpected argument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(o.modes, ","); got != tc.modes {
				t.Errorf("modes %s, want %s", got, tc.modes)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestParseMetrics parses a Prometheus exposition with labels, escapes,
// an exponent and a line that is not a sample.
func TestParseMetrics(t *testing.T) {
	text := `# HELP relay_dials_total Dials answered, by outcome.
# TYPE relay_dials_total counter
relay_dials_total{outcome="spliced"} 42
relay_refusals_total{route="dial",status="503",reason="too \"many\", pending"} 3
process_open_fds 17
go_memstats_heap_alloc_bytes 1.5e+06
garbage line
`
	ms, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("%d samples, want 4: %+v", len(ms), ms)
	}
	if ms[0].name != "relay_dials_total" || ms[0].labels["outcome"] != "spliced" || ms[0].value != 42 {
		t.Errorf("sample 0: %+v", ms[0])
	}
	if ms[1].labels["reason"] != `too "many", pending` || ms[1].labels["status"] != "503" {
		t.Errorf("sample 1 labels: %q", ms[1].labels)
	}
	if ms[3].value != 1.5e6 {
		t.Errorf("sample 3: %+v", ms[3])
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpawnSmoke runs the spawn mode with tiny counts: the relay binary,
// the servers and the proxy in their own processes. It checks the table
// has every row, that nothing failed and nothing was refused, and what
// spawn.json recorded.
func TestSpawnSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and spawns relaynode")
	}
	const n = 20
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-spawn", "-quick", "-n", "20", "-duration", "100ms", "-conc", "1,8", "-bulk-mib", "2", "-warm", "2", "-out", dir}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"latency p50", "latency p99", "latency p999", "rate c=1 (dials/s)", "rate c=8 (dials/s)",
		"bulk 1 stream", "bulk 8 streams", "idle memory/pair (RSS)", "idle fds/pair",
		"cold/direct", "cold/proxy", "warm/direct", "warm/proxy",
		"warm dial p50", "cold dial p50", "dial rate c=32",
		"errors: 0 (latency 0, rate 0, bulk 0, idle 0)", "refusals: 0 ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	// Every latency row and the fds row have a figure in each path column
	// they have. The RSS row is not checked: at 20 pairs a page or two of
	// RSS noise can make a path's share negative, and its ratio "—".
	for _, line := range strings.Split(out, "\n") {
		if (strings.HasPrefix(line, "latency p") && strings.Contains(line, "—")) ||
			(strings.HasPrefix(line, "idle fds") && strings.Count(line, "—") != 3) {
			t.Errorf("row with a missing figure: %q", line)
		}
	}

	data, err := os.ReadFile(filepath.Join(dir, "spawn.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res spawnRun
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("spawn.json does not parse: %v", err)
	}
	if res.PIDs["relay"] <= 0 || res.PIDs["servers"] <= 0 || res.PIDs["proxy"] <= 0 || res.PIDs["relay"] == res.PIDs["proxy"] {
		t.Errorf("pids: %v, want three processes", res.PIDs)
	}
	if len(res.Latency) != 4 {
		t.Fatalf("%d latency paths, want 4", len(res.Latency))
	}
	for _, l := range res.Latency {
		if l.N != n || l.Errors != 0 {
			t.Errorf("latency %s: %d dials, %d errors (%s), want %d and 0", l.Target, l.N, l.Errors, l.FirstError, n)
		}
	}
	if len(res.Rate) != 2*3 {
		t.Errorf("%d rate runs, want 6 (2 concurrencies × 3 paths)", len(res.Rate))
	}
	for _, r := range res.Rate {
		if r.Dials <= 0 || r.Errors != 0 {
			t.Errorf("rate %s c=%d: %d dials, %d errors (%s)", r.Target, r.Concurrency, r.Dials, r.Errors, r.FirstError)
		}
	}
	if len(res.Bulk) != 2*3 {
		t.Errorf("%d bulk runs, want 6 (2 stream counts × 3 paths)", len(res.Bulk))
	}
	for _, b := range res.Bulk {
		if b.Errors != 0 || len(b.MBps) != 1 {
			t.Errorf("bulk %s ×%d: %d errors (%s), %d runs", b.Target, b.Streams, b.Errors, b.FirstError, len(b.MBps))
		}
	}
	if len(res.Idle) != 3 {
		t.Fatalf("%d idle paths, want 3", len(res.Idle))
	}
	for _, i := range res.Idle {
		// Each held connection costs the process in the middle at least
		// one socket: the relay two, the proxy two and its pipes, the
		// echo server one.
		if i.Conns != n || i.PerConn.FDs < 0.9 {
			t.Errorf("idle %s: %d conns, %.2f fds each", i.Target, i.Conns, i.PerConn.FDs)
		}
	}
	if res.Refusals != 0 || res.Dials["spliced"] <= 0 {
		t.Errorf("relay counters: %d refusals (%v), dials %v", res.Refusals, res.RefusalsBy, res.Dials)
	}
}

// TestSpawnFlags checks the spawn mode's flag checks.
func TestSpawnFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-spawn", "-mode", "mailbox"},
		{"-spawn", "-relay", "127.0.0.1:1"},
		{"-spawn", "-targets", "cold,nowhere"},
		{"-relay-flags", "-dial-rate -1"},
	} {
		var stderr bytes.Buffer
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags([]string{"-spawn", "-relay-flags", "-dial-rate -1  -max-parked 8", "-targets", "cold,proxy,cold"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.modes, ",") != "latency,rate,bulk,idle" || strings.Join(o.relayFlags, "|") != "-dial-rate|-1|-max-parked|8" || strings.Join(o.targets, ",") != "cold,proxy" {
		t.Errorf("options: modes %v, relay flags %q, targets %v", o.modes, o.relayFlags, o.targets)
	}
}

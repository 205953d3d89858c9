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

// TestClusterSmoke runs the cluster mode with tiny counts: an etcd and
// two relaynode processes sharing it. It checks the table has every row,
// that no dial failed on either path, and what cluster.json recorded.
func TestClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and spawns relaynode and etcd")
	}
	if _, err := etcdBinary(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (.ci/run installs Debian's etcd-server)", err)
		}
		t.Skip(err)
	}
	const n = 20
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-cluster", "-quick", "-n", "20", "-duration", "100ms", "-conc", "1,8", "-out", dir}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"latency p50", "latency p99", "rate c=1 (dials/s)", "rate c=8 (dials/s)",
		"same node", "cross node", "cross/same", "cross-node dial p50",
		"errors: 0 (latency 0, rate 0)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res clusterRun
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("cluster.json does not parse: %v", err)
	}
	if res.PIDs["n1"] <= 0 || res.PIDs["n2"] <= 0 || res.PIDs["n1"] == res.PIDs["n2"] || res.PIDs["etcd"] <= 0 {
		t.Errorf("pids: %v, want two nodes and etcd", res.PIDs)
	}
	if len(res.Latency) != 2 {
		t.Fatalf("%d latency paths, want 2", len(res.Latency))
	}
	for _, l := range res.Latency {
		if l.N != n || l.Errors != 0 || l.P50US <= 0 {
			t.Errorf("latency %s: %d dials, %d errors (%s), p50 %.0f µs; want %d and 0", l.Target, l.N, l.Errors, l.FirstError, l.P50US, n)
		}
	}
	if len(res.Rate) != 2*2 {
		t.Errorf("%d rate runs, want 4 (2 concurrencies × 2 paths)", len(res.Rate))
	}
	for _, r := range res.Rate {
		if r.Dials <= 0 || r.Errors != 0 {
			t.Errorf("rate %s c=%d: %d dials, %d errors (%s)", r.Target, r.Concurrency, r.Dials, r.Errors, r.FirstError)
		}
	}
	// Every cross-node dial sent one Notify, answered: the warm-ups, the
	// 20 measured and the rate runs'.
	if res.Notifies < n || res.NotifyMeanUS <= 0 {
		t.Errorf("notifies: %d, mean %.0f µs; want at least %d answered", res.Notifies, res.NotifyMeanUS, n)
	}
	if len(res.Checks) != 2 || res.Checks[0].Value <= 0 {
		t.Errorf("checks: %+v, want the cross/same p50 ratio twice", res.Checks)
	}
}

// TestClusterFlags checks the cluster mode's flag checks.
func TestClusterFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-cluster", "-mode", "bulk"},
		{"-cluster", "-spawn"},
		{"-cluster", "-relay", "127.0.0.1:1"},
		{"-etcd-bin", "/usr/bin/etcd"},
	} {
		if _, err := parseFlags(args, new(bytes.Buffer)); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags([]string{"-cluster", "-relay-flags", "-dial-rate -1", "-etcd-bin", "/x/etcd"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.modes, ",") != "latency,rate" || strings.Join(o.relayFlags, "|") != "-dial-rate|-1" || o.etcdBin != "/x/etcd" || !o.cluster {
		t.Errorf("options: modes %v, relay flags %q, etcd %q", o.modes, o.relayFlags, o.etcdBin)
	}
}

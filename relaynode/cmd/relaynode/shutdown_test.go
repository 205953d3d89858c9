package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// shutdownSlack is the documented bound on how long, beyond -grace, the
// binary may take to exit after SIGTERM (docs/OPERATIONS.md, "Draining a
// relay for an upgrade"). The test allows more, shutdownTestBound, so
// that a loaded machine does not fail it.
const (
	grace             = 2 * time.Second
	shutdownTestBound = grace + 3*time.Second
)

// TestSIGTERMWithinGrace runs the binary with -grace 2s and, at the
// moment of SIGTERM, a registration stream, a live pair that never ends, a
// connection that sent half its request headers, and an idle keep-alive
// connection: the worst a drain meets. The process must exit 0 within
// grace plus the bound, and the pair must have been cut.
func TestSIGTERMWithinGrace(t *testing.T) {
	p := startRelay(t, build(t), "-listen", "127.0.0.1:0", "-grace", grace.String(), "-admin-listen", "127.0.0.1:0")

	ln, err := endpoints.ListenRelay("tcp", "held", "http://"+p.addr,
		endpoints.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.ServeEcho(t, ln)
	defer srv.Stop()
	d := endpoints.NewRelayDialer(p.addr, "tester")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pair, err := d.DialContext(ctx, "tcp", "held")
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	if _, err := pair.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(pair, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// Half a request: the header timeout (5s) is longer than the grace.
	half, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := half.Write([]byte("POST /v1/dial/held HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// A finished request, its connection then idle in keep-alive.
	idle, err := relaytest.DialRaw(&net.Dialer{}, p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := idle.Send(relaytest.Request("POST", "/v1/nowhere")); err != nil {
		t.Fatal(err)
	}
	if a := idle.Answer(5 * time.Second); a.Status != 404 {
		t.Fatalf("probe: %v, want 404", a)
	}

	// A registration that never calls back, and a dial pending on it:
	// CallbackTimeout (10s) is longer than the grace.
	quiet, err := relaytest.DialRaw(&net.Dialer{}, p.addr, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	if err := quiet.Send(relaytest.ListenRequest("quiet")); err != nil {
		t.Fatal(err)
	}
	if a := quiet.Answer(5 * time.Second); a.Status != 200 {
		t.Fatalf("listen quiet: %v", a)
	}
	pending, err := relaytest.DialRaw(&net.Dialer{}, p.addr, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	if err := pending.Send(relaytest.DialRequest("quiet", "c")); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, quiet)      // the stream's events, until it ends
	time.Sleep(100 * time.Millisecond) // let the dial reach the engine; the test holds either way

	t0 := time.Now()
	err = p.stop(syscall.SIGTERM)
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v; logs:\n%s", err, p.logs)
	}
	t.Logf("SIGTERM with -grace %v: exited after %v", grace, took.Round(time.Millisecond))
	if took > shutdownTestBound {
		t.Fatalf("exited %v after SIGTERM, want under %v (grace %v + bound); logs:\n%s", took, shutdownTestBound, grace, p.logs)
	}
	pair.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := pair.Read(make([]byte, 1)); err == nil {
		t.Fatalf("pair still open after exit: read %d bytes", n)
	}
}

// TestAwaitShutdownBound checks the binary's cap on a Shutdown that does
// not return: once ctx has ended, awaitShutdown gives up after its bound
// and says so; a Shutdown that returns, before or after ctx ends, is
// waited for, and its error logged.
func TestAwaitShutdownBound(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if awaitShutdown(ctx, make(chan error), 10*time.Millisecond, log) {
		t.Fatal("a Shutdown that never returns was reported finished")
	}

	shut := make(chan error, 1)
	shut <- context.DeadlineExceeded
	if !awaitShutdown(ctx, shut, time.Minute, log) {
		t.Fatal("a Shutdown that returned was reported unfinished")
	}
	if !strings.Contains(logs.String(), `msg="shutdown cut live pairs" err="context deadline exceeded"`) {
		t.Fatalf("logs lack the cut: %q", logs.String())
	}

	live, stop := context.WithCancel(context.Background())
	defer stop()
	late := make(chan error, 1)
	go func() { late <- nil }()
	if !awaitShutdown(live, late, time.Minute, log) {
		t.Fatal("a Shutdown returning before ctx ends was reported unfinished")
	}
}

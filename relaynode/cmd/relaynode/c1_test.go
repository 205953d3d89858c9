package main

import (
	"net"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestBinaryKilled is C1 with the real binary: the relay process is killed
// with SIGKILL mid-stream and started again on the same port, 20 times (8
// under -short). The listener must come back each time by itself, and
// Accept must never fail.
func TestBinaryKilled(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 8
	}
	bin := build(t)
	addr := freeAddr(t)

	var cmd *exec.Cmd // the running relay
	var logs *syncBuffer
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait() // "signal: killed"
		cmd = nil
	}
	t.Cleanup(func() {
		if cmd != nil {
			kill()
		}
	})
	start := func() {
		t.Helper()
		logs = &syncBuffer{}
		cmd = exec.Command(bin, "-listen", addr, "-heartbeat", "100ms", "-log-level", "warn")
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}

	t0 := time.Now()
	start()
	var ln net.Listener
	for {
		var err error
		ln, err = endpoints.ListenRelay("tcp", "c1bin", "http://"+addr,
			endpoints.WithBackoff(20*time.Millisecond, 300*time.Millisecond),
			endpoints.WithHandshakeTimeout(time.Second))
		if err == nil {
			break
		}
		if time.Since(t0) > 15*time.Second {
			t.Fatalf("no registration 15s after the first start: %v; logs:\n%s", err, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last relay's logs:\n%s", logs)
		}
	})
	loop := relaytest.Serve(t, ln, relaytest.Echo)

	d := endpoints.NewRelayDialer(addr, "c1bin-client")
	took := relaytest.Restarter{Dialer: d, Name: "c1bin", Bound: 15 * time.Second,
		Start: start, Stop: kill, Budget: 80 * time.Second}.Run(t, cycles, t0) // SIGKILL mid-transfer
	loop.Stop()
	if errs := loop.AcceptErrs(); len(errs) > 0 {
		t.Errorf("Accept returned errors across kills: %v", errs)
	}
	st := ln.(interface {
		State() endpoints.ListenerState
	}).State()
	if done := len(took); st.Reconnects < done-1 {
		t.Errorf("State().Reconnects = %d after %d cycles, want >= %d", st.Reconnects, done, done-1)
	}
	s := make([]time.Duration, 0, len(took))
	for _, c := range took {
		s = append(s, c.FirstDial())
	}
	slices.Sort(s)
	t.Logf("C1 binary: %d SIGKILL cycles, process start→first successful dial median %v max %v; listener reconnects %d",
		len(took), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), st.Reconnects)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

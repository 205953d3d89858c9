package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/v0wire"
)

// TestBinaryCompatV0 runs the binary with -compat-v0: it logs the warning
// once, and a v0 server and client echo through it; without the flag
// there is no warning and /serverconn is not served.
func TestBinaryCompatV0(t *testing.T) {
	bin := build(t)
	p := startRelay(t, bin, "-listen", "127.0.0.1:0", "-compat-v0")
	p.waitLog(t, "compat-v0 on: v0 matching is unauthenticated", 5*time.Second)

	s, err := v0wire.Register(p.addr, "svc", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(relaytest.Echo, nil) }()
	c, err := v0wire.Dial(p.addr, "c1", "svc", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("through the binary, v0")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("echo %q, %v", got, err)
	}
	c.Close()
	s.Close()
	<-served
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit: %v", err)
	}
	if n := strings.Count(p.logs.String(), "compat-v0 on"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, p.logs)
	}

	q := startRelay(t, bin, "-listen", "127.0.0.1:0")
	if _, err := v0wire.Register(q.addr, "svc", 5*time.Second); v0wire.Status(err) != http.StatusNotFound {
		t.Errorf("v0 register without -compat-v0: %v, want 404", err)
	}
	if err := q.stop(syscall.SIGTERM); err != nil {
		t.Errorf("exit: %v", err)
	}
	if strings.Contains(q.logs.String(), "compat-v0") {
		t.Errorf("warning without the flag:\n%s", q.logs)
	}
}

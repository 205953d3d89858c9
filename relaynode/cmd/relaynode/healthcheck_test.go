package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestHealthcheckMode probes a real node's admin listener with
// -healthcheck: 0 (nil) on /healthz, an error naming the status on a
// route that is not there, and an error once the node is closed.
func TestHealthcheckMode(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Node.ServeAdmin(ln) }()
	base := "http://" + ln.Addr().String()

	var stdout bytes.Buffer
	if err := run([]string{"-healthcheck", base + "/healthz"}, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("-healthcheck /healthz: %v", err)
	}
	if got, want := stdout.String(), base+"/healthz: ok\n"; got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
	err = run([]string{"-healthcheck", base + "/nothing"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("-healthcheck /nothing: %v, want status 404", err)
	}
	err = run([]string{"-healthcheck", "127.0.0.1:9"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "not an http:// or https:// URL") {
		t.Fatalf("-healthcheck without a scheme: %v", err)
	}
	r.Close()
	<-served
	err = run([]string{"-healthcheck", base + "/healthz"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("-healthcheck after Close: %v, want connection refused", err)
	}
}

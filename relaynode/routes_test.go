package relaynode_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// do sends one raw request on a new connection and returns the answer,
// failing the test if there is none.
func do(t testing.TB, addr, raw string) relaytest.Answer {
	t.Helper()
	a := relaytest.Do(addr, raw, 5*time.Second)
	if a.Status == 0 {
		t.Fatalf("read response: %v", a.Err)
	}
	return a
}

// TestRouteRefusals checks each refusal's status and text, all answered as
// plain HTTP before any switch.
func TestRouteRefusals(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	tok := wire.NewToken().String()
	reg := "Relay-Registration: " + wire.NewToken().String()
	tests := []struct {
		name   string
		raw    string
		status int
		text   string
	}{
		{"unknown route", relaytest.Request("POST", "/v2/dial/x"), 404, "no such route"},
		{"root", relaytest.Request("GET", "/"), 404, "no such route"},
		{"wrong method", relaytest.Request("GET", "/v1/dial/x", relaytest.UpgradeHeaders), 405, "method not allowed"},
		{"bad name", relaytest.Request("POST", "/v1/dial/a%20b", relaytest.UpgradeHeaders), 400, "invalid name"},
		{"long name", relaytest.Request("POST", "/v1/listen/"+strings.Repeat("a", 129)), 400, "invalid name"},
		{"dial without upgrade", relaytest.Request("POST", "/v1/dial/x"), 426, "upgrade"},
		{"dial wrong upgrade", relaytest.Request("POST", "/v1/dial/x", "Connection: Upgrade", "Upgrade: websocket"), 426, "upgrade"},
		{"dial unknown name", relaytest.Request("POST", "/v1/dial/nobody", relaytest.UpgradeHeaders), 404, "unknown name"},
		{"dial bad client name", relaytest.Request("POST", "/v1/dial/x", relaytest.UpgradeHeaders, "Relay-Client-Name: bad/name"), 400, "invalid client name"},
		{"accept short token", relaytest.Request("POST", "/v1/accept/abc", relaytest.UpgradeHeaders, reg), 400, "malformed token"},
		{"accept without registration", relaytest.Request("POST", "/v1/accept/"+tok, relaytest.UpgradeHeaders), 400, "Relay-Registration"},
		{"accept without upgrade", relaytest.Request("POST", "/v1/accept/"+tok, reg), 426, "upgrade"},
		{"accept unknown token", relaytest.Request("POST", "/v1/accept/"+tok, relaytest.UpgradeHeaders, reg), 404, "unknown token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, r.Addr, tt.raw)
			if a.Status != tt.status {
				t.Fatalf("status = %d (%q), want %d", a.Status, a.Reason, tt.status)
			}
			if !strings.Contains(a.Reason, tt.text) {
				t.Errorf("body = %q, want it to contain %q", a.Reason, tt.text)
			}
			if tt.status == 426 && a.Header.Get("Upgrade") != wire.UpgradeProtocol {
				t.Errorf("426 without Upgrade header: %v", a.Header)
			}
			if a.Header.Get(wire.HeaderNode) == "" {
				t.Errorf("no %s header", wire.HeaderNode)
			}
		})
	}
}

// TestHeaderLimits checks the server-side caps of Node.Serve.
func TestHeaderLimits(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{MaxHeaderBytes: 4096})
	big := "X-Big: " + strings.Repeat("a", 64<<10)
	if a := do(t, r.Addr, relaytest.Request("POST", "/v1/dial/x", relaytest.UpgradeHeaders, big)); a.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status = %v, want 431", a)
	}
}

// openStream registers name by hand and returns the event reader, before
// the ready event, with 5s to read it all. The connection is closed in
// cleanup.
func openStream(t testing.TB, addr, name string) (*wire.Reader, net.Conn) {
	t.Helper()
	c, err := relaytest.DialRaw(nil, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Send(relaytest.ListenRequest(name)); err != nil {
		t.Fatal(err)
	}
	a := c.Answer(5 * time.Second)
	if a.Status != 200 || a.Header.Get("Content-Type") != wire.ContentTypeEventStream {
		t.Fatalf("listen: %v %v", a, a.Header)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // the stream's reads: a bound against hangs
	return wire.NewReader(a.Body, 0, 0), c
}

func TestStreamReadyAndHeartbeat(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{Heartbeat: 20 * time.Millisecond, NodeID: "node-a"})
	sse, c := openStream(t, r.Addr, "svc")
	ev, err := sse.Next()
	if err != nil || ev.Type != wire.EventReady {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	ready, err := wire.ParseReady(ev.Data)
	if err != nil || ready.Node != "node-a" || ready.HeartbeatMillis != 20 {
		t.Fatalf("ready = %+v, %v", ready, err)
	}
	// Heartbeat comments keep coming; a reader sees no event for them, so
	// read raw bytes: within 1s the stream carries ": hb" lines.
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 256)
	n, _ := io.ReadAtLeast(c, buf, 16)
	if !strings.Contains(string(buf[:n]), ": hb\n") {
		t.Fatalf("no heartbeat in %q", buf[:n])
	}
	// A second registration of the live name is refused.
	if a := do(t, r.Addr, relaytest.ListenRequest("svc")); a.Status != http.StatusConflict {
		t.Fatalf("duplicate listen: %v, want 409", a)
	}
}

// TestShutdownDrains checks Node.Shutdown: a drain event on every stream,
// the stream ends, new requests get 503, and Shutdown returns nil.
func TestShutdownDrains(t *testing.T) {
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()
	sse, _ := openStream(t, ln.Addr().String(), "svc")
	if ev, err := sse.Next(); err != nil || ev.Type != wire.EventReady {
		t.Fatalf("ready: %+v %v", ev, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- node.Shutdown(ctx) }()
	ev, err := sse.Next()
	if err != nil || ev.Type != wire.EventDrain {
		t.Fatalf("want drain event, got %+v, %v", ev, err)
	}
	if _, err := sse.Next(); err == nil {
		t.Fatal("stream still open after drain")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
	rec := &recorder{header: http.Header{}}
	node.ServeHTTP(rec, httpRequest(t, "POST", "/v1/listen/other"))
	if rec.status != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: %d, want 503", rec.status)
	}
	if err := node.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := node.Serve(ln2); err != http.ErrServerClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []relaynode.Config{
		{Heartbeat: -1},
		{Heartbeat: time.Millisecond},
		{MaxHeaderBytes: 10},
		{Limits: actors.Limits{CallbackTimeout: -time.Second}},
		{Limits: actors.Limits{EventQueue: -3}},
	} {
		if _, err := relaynode.New(c); err == nil {
			t.Errorf("New(%+v) = nil error", c)
		}
	}
}

type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int)   { r.status = s }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}

func httpRequest(t testing.TB, method, path string) *http.Request {
	r, err := http.NewRequest(method, "http://relay"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestShutdownKeepsPendingDials checks that a dial made before a drain is
// still completed: its connect event is sent before the drain event, the
// server's callback is served while draining, and the stream ends only once
// no dial is pending.
func TestShutdownKeepsPendingDials(t *testing.T) {
	node, err := relaynode.New(relaynode.Config{Limits: actors.Limits{CallbackTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()
	sse, _ := openStream(t, addr, "svc")
	ev, err := sse.Next()
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := wire.ParseReady(ev.Data)

	// A client dials; its connect event is queued for the server.
	dialed := make(chan error, 1)
	go func() {
		var err error
		if a := relaytest.Do(addr, relaytest.DialRequest("svc", ""), 10*time.Second); a.Status != http.StatusSwitchingProtocols {
			err = fmt.Errorf("dial answered %v", a)
		}
		dialed <- err
	}()
	ev, err = sse.Next()
	if err != nil || ev.Type != wire.EventConnect {
		t.Fatalf("want connect, got %+v %v", ev, err)
	}
	ce, _ := wire.ParseConnect(ev.Data)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctx) }()
	if ev, err := sse.Next(); err != nil || ev.Type != wire.EventDrain {
		t.Fatalf("want drain, got %+v %v", ev, err)
	}
	// New dials are refused while draining...
	relaytest.Eventually(t, 10*time.Second, func() bool {
		rec := &recorder{header: http.Header{}}
		node.ServeHTTP(rec, httpRequest(t, "POST", "/v1/dial/svc"))
		return rec.status == http.StatusServiceUnavailable
	}, "dials not refused while draining")
	// ...but the callback for the dial made before is served.
	cb, a := relaytest.Upgrade(addr, relaytest.AcceptRequest(ce.Callback, ready.Registration), 5*time.Second)
	if cb == nil {
		t.Fatalf("callback during drain: %v, want 101", a)
	}
	defer cb.Close()
	if err := <-dialed; err != nil {
		t.Fatalf("dial made before the drain: %v", err)
	}
	// With nothing pending, the stream ends and Shutdown completes.
	if _, err := sse.Next(); err == nil {
		t.Fatal("stream still open after its dials settled")
	}
	cb.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
}

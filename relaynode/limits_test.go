package relaynode_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestDialRateLimit checks the per-client dial rate: the burst passes, the
// next dials to a registered name get 429 at the edge, and a dial to an
// unknown name over the rate still gets 404, never 429.
func TestDialRateLimit(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{DialRate: 0.001, DialBurst: 3, NegativeCacheTTL: -1})
	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	got := map[int]int{}
	for range 5 {
		c, err := endpoints.DialTCP("tcp", "svc", r.Addr, "")
		if err == nil {
			c.Close()
			got[http.StatusSwitchingProtocols]++
			continue
		}
		got[relayStatus(err)]++
	}
	if got[http.StatusSwitchingProtocols] != 3 || got[http.StatusTooManyRequests] != 2 {
		t.Fatalf("statuses = %v, want 3 spliced then 2×429", got)
	}
	for range 3 {
		if _, err := endpoints.DialTCP("tcp", "nobody", r.Addr, ""); relayStatus(err) != http.StatusNotFound {
			t.Fatalf("dial to an unknown name over the rate: %v, want 404", err)
		}
	}
}

// TestNegativeCache checks that a dial to an unknown name is answered 404
// at the edge for the TTL, without the engine, and that registering the
// name clears the entry.
func TestNegativeCache(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{NegativeCacheTTL: time.Minute})
	dir := func() int64 { return r.Node.Stats().Actors.Kinds[actors.KindDirectory].Processed }
	if _, err := endpoints.DialTCP("tcp", "late", r.Addr, ""); relayStatus(err) != http.StatusNotFound {
		t.Fatalf("first dial: %v", err)
	}
	before := dir()
	for range 20 {
		if _, err := endpoints.DialTCP("tcp", "late", r.Addr, ""); relayStatus(err) != http.StatusNotFound {
			t.Fatalf("cached dial: %v", err)
		}
	}
	if after := dir(); after != before {
		t.Fatalf("cached 404s reached the directory: %d messages", after-before)
	}
	ln, err := endpoints.ListenRelay("tcp", "late", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := endpoints.DialTCP("tcp", "late", r.Addr, "")
	if err != nil {
		t.Fatalf("dial after registration: %v (negative entry not cleared)", err)
	}
	c.Close()
}

// TestPendingCap checks the overall cap on pending dials: a dial past it
// is refused 503 while the others are still pending.
func TestPendingCap(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{MaxPending: 2, Limits: actors.Limits{CallbackTimeout: time.Minute}})
	raw, _ := openStream(t, r.Addr, "never")
	raw.Next() // ready; then never call back
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := endpoints.NewRelayDialer(r.Addr, "").DialContext(ctx, "tcp", "never")
			done <- err
		}()
	}
	relaytest.Eventually(t, 3*time.Second, func() bool { return r.Node.Stats().Pending == 2 }, "2 dials pending")
	_, err := endpoints.DialTCP("tcp", "never", r.Addr, "")
	if relayStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("third dial: %v, want 503", err)
	}
	// The 503 did not wait for a slot: both dials are still pending.
	select {
	case err := <-done:
		t.Fatalf("a pending dial ended (%v) before the third dial's 503", err)
	default:
	}
	if n := r.Node.Stats().Pending; n != 2 {
		t.Fatalf("%d dials pending after the 503, want 2", n)
	}
	cancel()
	<-done
	<-done
}

// TestBodyRefused checks that a request body is refused unread with 413.
func TestBodyRefused(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	if a := do(t, r.Addr, "POST /v1/listen/x HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\npartial"); a.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %v, want 413", a)
	}
}

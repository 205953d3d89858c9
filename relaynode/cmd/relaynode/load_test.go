package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestFlaglessBinaryLoad runs the binary with no limit flag (only
// -listen) and dials it a few thousand times from one host, as a load test
// does: 32 concurrent loops of dial, 1-byte echo, close. Every dial must
// go through: the defaults never refuse one legitimate host. Then a dial
// to an unknown name gets 404, not 429.
func TestFlaglessBinaryLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and dials it a few thousand times")
	}
	const loops, dials = 32, 3000
	p := startRelay(t, build(t), "-listen", "127.0.0.1:0")
	ln, err := endpoints.ListenRelay("tcp", "load", "http://"+p.addr)
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
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // against hangs only
	defer cancel()
	d := endpoints.NewRelayDialer(p.addr, "load-test", endpoints.WithDialTimeout(30*time.Second))
	l := relaytest.EchoLoad(ctx, d, "load", loops, dials)
	if l.OK != dials || len(l.Failures) != 0 {
		t.Fatalf("%d of %d dials went through; failures by status %v (first: %v)", l.OK, dials, l.Failures, l.First)
	}
	_, err = endpoints.DialTCP("tcp", "nobody", p.addr, "")
	var re *endpoints.RelayError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("dial to an unknown name after the load: %v, want 404", err)
	}
}

package relaynode_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestZeroConfigLoad serves relaynode.New(relaynode.Config{}) (no limit
// changed, unlike relaytest.Start) and dials it 1,024 times from 64
// concurrent loops on one host: dial, 1-byte echo, close. Every dial must
// go through.
func TestZeroConfigLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a few thousand dials")
	}
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
	defer func() {
		node.Close()
		<-served
	}()
	addr := ln.Addr().String()
	serveEchoOn(t, addr, "load")

	const loops, dials = 64, 1024
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // against hangs only
	defer cancel()
	d := endpoints.NewRelayDialer(addr, "", endpoints.WithDialTimeout(30*time.Second))
	l := relaytest.EchoLoad(ctx, d, "load", loops, dials)
	if l.OK != dials || len(l.Failures) != 0 {
		t.Fatalf("%d of %d dials went through; failures by status %v (first: %v)", l.OK, dials, l.Failures, l.First)
	}
	st, err := node.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Refusals) != 0 || st.Dials["spliced"] != dials {
		t.Fatalf("relay counted refusals %+v and %d spliced, want none and %d", st.Refusals, st.Dials["spliced"], dials)
	}
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve registers name on the relay through listen and serves the echo
// service on it until the test ends.
func serve(t *testing.T, ln net.Listener) {
	t.Helper()
	s := newServer()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("Serve: %v", err)
		}
	})
}

// calls runs the unary and the streaming call through cc and checks the
// bytes of every reply.
func calls(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		got, err := say(ctx, cc, msg)
		if err != nil || got != "echo: "+msg {
			t.Fatalf("Say(%q) = %q, %v", msg, got, err)
		}
	}
	msgs := []string{"one", "two", strings.Repeat("x", 100<<10)}
	replies, err := chat(ctx, cc, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != len(msgs) {
		t.Fatalf("Chat: %d replies, want %d", len(replies), len(msgs))
	}
	for i, m := range msgs {
		if replies[i] != "echo: "+m {
			t.Fatalf("Chat reply %d: %d bytes, want the echo of %d", i, len(replies[i]), len(m))
		}
	}
}

// TestGRPCThroughRelay serves gRPC on a relay name and calls it, unary
// and streaming, through the relay.
func TestGRPCThroughRelay(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	ln, err := endpoints.ListenRelay("tcp", "greeter", "http://"+r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	cc, err := dialRelay(r.Addr, "greeter", endpoints.NewRelayDialer(r.Addr, "grpc-test").DialContext,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	calls(t, cc)
}

// TestGRPCThroughRelayMTLS runs the same calls over the endpoints' MTLS:
// the TLS handshake is end to end through the relay, and gRPC runs over
// the TLS connection.
func TestGRPCThroughRelayMTLS(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	ca := relaytest.NewCA(t, "grpc test CA")
	serverCfg := &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "greeter", "greeter")},
		ClientCAs:    ca.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	ln, err := endpoints.ListenMTLS("tcp", "greeter", serverCfg, "http://"+r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	clientCfg := &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "grpc-test")},
		RootCAs:      ca.Pool,
		ServerName:   "greeter",
	}
	d := endpoints.NewRelayMTLSDialer(r.Addr, "grpc-test")
	dial := func(ctx context.Context, network, name string) (net.Conn, error) {
		return d.DialContext(ctx, network, name, clientCfg)
	}
	cc, err := dialRelay(r.Addr, "greeter", dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	calls(t, cc)

	// A client whose certificate the server's CA did not sign gets no
	// answer: the handshake fails end to end, and gRPC reports it.
	other := relaytest.NewCA(t, "other CA")
	badCfg := clientCfg.Clone()
	badCfg.Certificates = []tls.Certificate{other.Issue(t, "intruder")}
	bad := func(ctx context.Context, network, name string) (net.Conn, error) {
		return d.DialContext(ctx, network, name, badCfg)
	}
	cc2, err := dialRelay(r.Addr, "greeter", bad, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := say(ctx, cc2, "let me in"); err == nil {
		t.Fatalf("Say with a foreign certificate = %q, want an error", got)
	}
}

// TestPassthroughNeeded shows why the example's target is
// "passthrough:///NAME": with the default resolver, a relay name is
// looked up in DNS and the call fails before any dial.
func TestPassthroughNeeded(t *testing.T) {
	dialed := make(chan struct{}, 1)
	cc, err := grpc.NewClient("greeter.invalid",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			dialed <- struct{}{}
			return nil, fmt.Errorf("no dial expected for %q", target)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := say(ctx, cc, "x"); err == nil {
		t.Fatal("Say through the DNS resolver succeeded")
	}
	select {
	case <-dialed:
		t.Fatal("the dialer was called for a name DNS did not resolve")
	default:
	}
}

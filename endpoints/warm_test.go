package endpoints_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// waitParked waits until the relay holds n parked callbacks.
func waitParked(t testing.TB, node *relaynode.Node, n int64) {
	t.Helper()
	relaytest.Eventually(t, 5*time.Second, func() bool { return node.Stats().Parked == n },
		"parked callbacks never reached the expected count")
}

// splices returns the relay's count of warm and cold splices.
func splices(node *relaynode.Node) (warm, cold uint64) {
	st := node.Stats().Actors
	for _, c := range st.SpliceLatencyWarm.Counts {
		warm += c
	}
	for _, c := range st.SpliceLatency.Counts {
		cold += c
	}
	return warm, cold
}

// TestWarmPool checks WithWarmPool over every transport: the listener
// keeps its K callbacks parked, every dial that finds one is served by it
// (no connect event), and the application sees the same conns as without
// the pool: bytes both ways, the client's address and name.
func TestWarmPool(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			const k = 3
			r, ln, d := newPairWith(t, tr, pairConfig{listenOpts: []endpoints.Option{endpoints.WithWarmPool(k)}})
			serveEcho(t, ln)
			dials := tr.scaled(12, 6, 2)
			for i := range dials {
				waitParked(t, r.Node, k)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := d.DialContext(ctx, "tcp", serverName)
				cancel()
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				msg := []byte("warm hello")
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
					t.Fatalf("dial %d: echo %q, %v", i, got, err)
				}
				c.Close()
			}
			if warm, cold := splices(r.Node); warm != uint64(dials) || cold != 0 {
				t.Fatalf("splices warm %d cold %d, want %d warm", warm, cold, dials)
			}
			if f := ln.(failedCounter).Failed(); f != 0 {
				t.Fatalf("%d callbacks failed", f)
			}
		})
	}
}

// TestWarmPoolConnIdentity checks that a conn from a parked callback
// reports the client's address and name, as a cold callback's does.
func TestWarmPoolConnIdentity(t *testing.T) {
	r, ln, d := newPairWith(t, tcpTransport, pairConfig{listenOpts: []endpoints.Option{endpoints.WithWarmPool(1)}})
	waitParked(t, r.Node, 1)
	c, err := d.Dial("tcp", serverName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := acceptOne(t, ln)
	rc := relayed(t, s)
	if rc.RemoteAddr().String() != relayed(t, c).NetConn().LocalAddr().String() {
		t.Fatalf("server sees client at %v, want %v", rc.RemoteAddr(), relayed(t, c).NetConn().LocalAddr())
	}
	if rc.ClientName() != clientName {
		t.Fatalf("client name %q, want %q", rc.ClientName(), clientName)
	}
	// The pair actor counts the splice when it starts, which may be just
	// after the server's Accept returns.
	relaytest.Eventually(t, 5*time.Second, func() bool { warm, _ := splices(r.Node); return warm == 1 }, "one warm splice counted")
	if warm, cold := splices(r.Node); warm != 1 || cold != 0 {
		t.Fatalf("splices warm %d cold %d, want 1 warm", warm, cold)
	}
}

// TestWarmPoolCapped checks that a pool larger than the relay's cap keeps
// the cap's worth parked and still serves every dial, and that Close takes
// every parked callback out of the relay.
func TestWarmPoolCapped(t *testing.T) {
	r, ln, d := newPairWith(t, tcpTransport, pairConfig{
		relay:      relaynode.Config{Limits: actors.Limits{MaxParked: 2}},
		listenOpts: []endpoints.Option{endpoints.WithWarmPool(5), endpoints.WithBackoff(10*time.Millisecond, 50*time.Millisecond)},
	})
	serveEcho(t, ln)
	waitParked(t, r.Node, 2)
	for i := range 4 {
		c, err := d.Dial("tcp", serverName)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{byte(i)})
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
			t.Fatalf("dial %d: echo %v, %v", i, b, err)
		}
		c.Close()
	}
	waitParked(t, r.Node, 2)
	if got := r.Node.Stats().Parked; got > 2 {
		t.Fatalf("parked %d over the relay's cap 2", got)
	}
	ln.Close()
	waitParked(t, r.Node, 0)
}

// TestWarmPoolAcrossRestart checks that the pool comes back with the
// registration after the relay restarts on the same address.
func TestWarmPoolAcrossRestart(t *testing.T) {
	addr := freeAddr(t)
	r := startAt(t, addr)
	ln, err := endpoints.ListenRelay("tcp", serverName, "http://"+addr,
		endpoints.WithWarmPool(2), endpoints.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveEcho(t, ln)
	waitParked(t, r.Node, 2)
	r.close()
	r = startAt(t, addr)
	waitParked(t, r.Node, 2)
	c, err := endpoints.DialTCP("tcp", serverName, addr, clientName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("x"))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("echo after restart: %v %v", b, err)
	}
	if warm, _ := splices(r.Node); warm != 1 {
		t.Fatalf("warm splices after restart %d, want 1", warm)
	}
}

// nodeAt is a relay served on a fixed address, so that it can be
// restarted where its listeners expect it.
type nodeAt struct {
	Node   *relaynode.Node
	served chan error
}

func startAt(t testing.TB, addr string) *nodeAt {
	t.Helper()
	node, err := relaynode.New(relaynode.Config{DialRate: -1, Logger: relaytest.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	r := &nodeAt{Node: node, served: make(chan error, 1)}
	go func() { r.served <- node.Serve(ln) }()
	t.Cleanup(r.close)
	return r
}

func (r *nodeAt) close() {
	r.Node.Close()
	if r.served != nil {
		<-r.served
		r.served = nil
	}
}

// freeAddr returns a loopback address with a free port.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

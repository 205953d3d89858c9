package clustertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestEveryNodeDown kills both nodes of a two-node cluster under a
// listener and a dialer that list both:
//   - a dial through the list fails fast with a connect error from each
//     address, and no relay status;
//   - the listener says it is not connected and keeps retrying;
//   - one node started again at its old address (a new process, same
//     node id): the listener registers there and the name answers
//     through the dialer's list again.
//
// The time from that node's start to the name answering is logged.
func TestEveryNodeDown(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	ln := listenEcho(t, "lone", urls(n1, n2))
	d := dialer(addrs(n1, n2), "lister")
	waitPing(t, d, "lone", 10*time.Second)
	l, ok := ln.(*endpoints.Listener)
	if !ok {
		t.Fatalf("ListenRelay returned a %T, want *endpoints.Listener", ln)
	}

	n1.Kill()
	n2.Kill()
	for round := range 3 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), dialBound)
		conn, err := d.DialContext(ctx, "tcp", "lone")
		cancel()
		took := time.Since(start)
		if err == nil {
			conn.Close()
			t.Fatalf("round %d: dial succeeded with every node down", round)
		}
		var re *endpoints.RelayError
		if errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
			t.Fatalf("round %d: %v after %v; want a connect error from each address, fast", round, err, took)
		}
		for _, n := range []string{n1.Addr, n2.Addr} {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("round %d: error %q does not name %s", round, err, n)
			}
		}
		if round == 0 {
			t.Logf("dial with every node down: %v in %v", err, took.Round(time.Millisecond))
		}
	}
	relaytest.Eventually(t, 5*time.Second, func() bool {
		st := l.State()
		return !st.Connected && st.Registrations == 0 && st.Retrying > 0
	}, "the listener reports no registration and retries")
	st := l.State()
	t.Logf("listener with every node down: connected %v, registrations %d, retrying %d, last error %v", st.Connected, st.Registrations, st.Retrying, st.LastError)

	cfg := nodeConfig(c.etcd, n1.ID)
	cfg.Addr = n1.Addr
	started := time.Now()
	back := clusterproc.StartNode(t, cfg)
	waitPing(t, d, "lone", leaseTTL+10*time.Second)
	t.Logf("name answers %v after %s started again at its old address", time.Since(started).Round(time.Millisecond), back)
	if st := l.State(); !st.Connected || st.Registrations != 1 {
		t.Errorf("listener state after a node's return: %+v; want connected with one registration", st)
	}
}

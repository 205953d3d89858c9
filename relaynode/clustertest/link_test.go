package clustertest

import (
	"testing"
	"time"
)

// TestPeerDeathKnownAtOnce checks that a node learns of a peer's death as
// it happens even when no dial ever went between them: every node keeps a
// connection to every other (relay_cluster_peers_linked), and remote
// reports a broken one at once. A listener with the list (n2, n1) is
// registered at n2, and nothing is dialed through n1 before n2 is killed.
// Then no ping through n1 waits out the 2 s Notify timeout: each is
// answered at once (503 while n2's member is still listed, then the name
// at n1, where the listener moved). Without the connection, the first
// Notify to the dead node would wait out the timeout, since remote
// retries a connection it never made for about 10 s.
func TestPeerDeathKnownAtOnce(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	listenEcho(t, "far", urls(n2, n1))
	waitPing(t, dialer(n2.Addr, "near"), "far", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok := n1.Metric("relay_cluster_peers_linked"); ok && v == 1 {
			break
		}
		if time.Now().After(deadline) {
			v, _ := n1.Metric("relay_cluster_peers_linked")
			t.Fatalf("n1 linked to %v peers after 10s, want 1 (n2)", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, _ := n1.Metric("relay_cluster_cross_node_dials_total"); v != 0 {
		t.Fatalf("n1 made %v cross-node dials before the kill, want none", v)
	}

	n2.Kill()
	killed := time.Now()
	d := dialer(n1.Addr, "after")
	var slowest time.Duration
	var failures int
	for {
		start := time.Now()
		err := pingVia(d, "far")
		slowest = max(slowest, time.Since(start))
		if err == nil {
			break
		}
		failures++
		if time.Since(killed) > leaseTTL+10*time.Second {
			t.Fatalf("far not reachable through n1 within %v of the kill: %v", time.Since(killed), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("kill→reachable through n1: %v, %d pings failed before, the slowest took %v",
		time.Since(killed).Round(time.Millisecond), failures, slowest.Round(time.Millisecond))
	if slowest >= time.Second {
		t.Fatalf("a ping after the kill took %v: the dead peer was not known at once (Notify timeout 2s)", slowest)
	}
}

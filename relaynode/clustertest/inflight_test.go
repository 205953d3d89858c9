package clustertest

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// TestInFlightNotifyFailsOver checks that a Notify already sent when its
// peer dies fails over as soon as the connection breaks, not at the
// Notify timeout (2 s). n2 is stopped (SIGSTOP: its sockets stay open and
// take the Notifies without an answer) while dials go through n1 to a
// name held at both nodes, so that some of them wait on n2 over the
// connection n1 already holds there; then n2 is killed. Every dial must be served, by n1's member, well within the
// timeout after the kill.
func TestInFlightNotifyFailsOver(t *testing.T) {
	authFile, tok := authAll(t)
	c := startCluster(t, 2, "-auth-file", authFile)
	n1, n2 := c.nodes[0], c.nodes[1]
	listenEcho(t, "both", urls(n1, n2), endpoints.WithToken(tok), endpoints.WithRedundancy(2))
	waitLayout(t, c.nodes, []string{n1.ID, n2.ID}, map[string]string{"both": n1.ID + "," + n2.ID}, 10*time.Second)
	d := dialer(n1.URL, "inflight")
	waitPing(t, d, "both", 10*time.Second)
	// The connection to n2 is made (the peer links): a Notify on it is in
	// flight, rather than queued behind a connection being made.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok := n1.Metric("relay_cluster_peers_linked"); ok && v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 not linked to n2 after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before, _ := n1.Metric("relay_cluster_cross_node_dials_total")

	if err := syscall.Kill(n2.PID(), syscall.SIGSTOP); err != nil {
		t.Fatalf("stop %s: %v", n2, err)
	}
	const dials = 6 // round robin over two members: about half wait on n2
	var wg sync.WaitGroup
	errs := make([]error, dials)
	ended := make([]time.Time, dials)
	for i := range dials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pingVia(d, "both")
			ended[i] = time.Now()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	waited, _ := n1.Metric("relay_cluster_cross_node_dials_total")
	killed := time.Now()
	n2.Kill()
	wg.Wait()

	if waited-before < 1 {
		t.Fatalf("no dial went to the stopped node (cross-node dials %v → %v): nothing was in flight", before, waited)
	}
	slowest := time.Duration(-1 << 62)
	for i, err := range errs {
		if err != nil {
			t.Errorf("dial %d: %v", i, err)
			continue
		}
		slowest = max(slowest, ended[i].Sub(killed))
	}
	t.Logf("%v dials waited on the stopped node; the last dial ended %v after the kill", waited-before, slowest.Round(10*time.Microsecond))
	if slowest < 0 {
		t.Fatalf("every dial ended before the kill (the last %v before it): none waited on the stopped node", -slowest)
	}
	if slowest >= time.Second {
		t.Fatalf("a dial ended %v after the kill: its Notify waited out the timeout instead of failing over when the connection broke", slowest)
	}
}

package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// TestNodeDrain ends one of three nodes with SIGTERM during traffic: a
// drain, not a crash.
//   - dials to the survivors' names all succeed, and no pair is cut;
//   - the listener that lists the draining node first moves to the next
//     node of its list; its dials meanwhile succeed or, in the gap of
//     the move, are refused 503 (the node drains) or 404 (it has left the
//     directory, the listener not yet arrived): never another status, a
//     hang or a cut pair. The gap is logged;
//   - a listener holding two registrations (WithRedundancy(2)), one on
//     the draining node, loses no dial;
//   - the drained node leaves the directory on its way out (its lease
//     revoked), so its single-URL name answers 404 with no wait for the
//     lease TTL.
func TestNodeDrain(t *testing.T) {
	authFile, tok := authAll(t)
	c := startCluster(t, 3, "-grace", "5s", "-auth-file", authFile)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	withTok := endpoints.WithToken(tok)
	listenEcho(t, "stay", n1.URL, withTok)
	listenEcho(t, "leaving", n3.URL, withTok)
	listenEcho(t, "mover", urls(n3, n2), withTok)
	listenEcho(t, "both", urls(n3, n2, n1), withTok, endpoints.WithRedundancy(2))
	for _, from := range c.nodes[:2] {
		d := dialer(from.URL, "warmup")
		for _, name := range []string{"stay", "leaving", "mover", "both"} {
			waitPing(t, d, name, 10*time.Second)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var counts []*tally
	for _, from := range c.nodes[:2] {
		for _, name := range []string{"stay", "mover", "both"} {
			k := &tally{what: fmt.Sprintf("%s via %s", name, from.ID)}
			if name == "mover" {
				k.gapStatus = []int{http.StatusServiceUnavailable, http.StatusNotFound}
			}
			counts = append(counts, k)
			traffic(&wg, stop, k, dialer(from.URL, "traffic"), name, 5000)
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(300 * time.Millisecond)
	termed := time.Now()
	if err := n3.Term(15 * time.Second); err != nil {
		t.Fatalf("drain %s: %v", n3, err)
	}
	exited := time.Since(termed)

	// Gone at once: the lease went with the node.
	d := dialer(n1.URL, "probe")
	ctx, cancel := context.WithTimeout(context.Background(), dialBound)
	conn, err := d.DialContext(ctx, "tcp", "leaving")
	cancel()
	if err == nil {
		conn.Close()
		t.Errorf("leaving answered after its node drained")
	} else if status(err) != http.StatusNotFound {
		t.Errorf("leaving via n1 after n3 drained and exited: %v; want 404", err)
	}
	// The mover is at n2.
	waitLayout(t, c.nodes[:2], []string{n1.ID, n2.ID}, map[string]string{"stay": n1.ID, "mover": n2.ID, "both": n1.ID + "," + n2.ID}, 5*time.Second)
	t.Logf("SIGTERM→exit of the drained node: %v; its names gone and the mover on n2 %v after SIGTERM", exited.Round(time.Millisecond), time.Since(termed).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, k := range counts {
		k.check(t)
	}
}

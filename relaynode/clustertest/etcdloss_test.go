package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fastFail bounds a cross-node dial refused for the loss of etcd: the
// refusal must come this fast, never after a dial timeout.
const fastFail = 2 * time.Second

// TestEtcdLoss stops etcd under a two-node cluster and starts it again:
//   - same-node dials keep working throughout, none fails;
//   - once a node has lost its lease (/readyz 503), cross-node dials from
//     it are refused 503 with a reason, each within fastFail; before
//     then, each is answered (success or 503) within fastFail too;
//   - when etcd is back, /readyz is 200 again and every name answers from
//     every node, with no node restarted.
func TestEtcdLoss(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	listenEcho(t, "e-1", n1.URL)
	listenEcho(t, "e-2", n2.URL)
	for _, from := range c.nodes {
		d := dialer(from.URL, "warmup")
		waitPing(t, d, "e-1", 10*time.Second)
		waitPing(t, d, "e-2", 10*time.Second)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	same := []*tally{{what: "e-1 via n1 (same node)"}, {what: "e-2 via n2 (same node)"}}
	traffic(&wg, stop, same[0], dialer(n1.URL, "traffic"), "e-1", 5000)
	traffic(&wg, stop, same[1], dialer(n2.URL, "traffic"), "e-2", 5000)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	c.etcd.Stop()
	t.Log("etcd stopped")

	// Until a node reports the lease lost, its cross-node dials are
	// answered fast, either way.
	lostBound := leaseTTL + 15*time.Second
	lost := make([]time.Duration, 2)
	for i, from := range c.nodes {
		other := "e-" + fmt.Sprint(2-i)
		d := dialer(from.URL, "cross")
		deadline := stopped.Add(lostBound)
		for from.Ready() != http.StatusServiceUnavailable {
			if time.Now().After(deadline) {
				t.Fatalf("%s /readyz not 503 within %v of etcd's stop", from.ID, lostBound)
			}
			start := time.Now()
			err := pingVia(d, other)
			if took := time.Since(start); took > fastFail || (err != nil && status(err) != http.StatusServiceUnavailable) {
				t.Errorf("%s via %s with etcd away, lease held: %v in %v; want success or 503 within %v", other, from.ID, err, took, fastFail)
			}
			time.Sleep(50 * time.Millisecond)
		}
		lost[i] = time.Since(stopped)
	}
	t.Logf("/readyz 503 after etcd stopped: n1 %v, n2 %v", lost[0].Round(time.Millisecond), lost[1].Round(time.Millisecond))

	// Lease lost: every cross-node dial is a fast 503.
	var refused int
	for round := range 5 {
		for i, from := range c.nodes {
			other := "e-" + fmt.Sprint(2-i)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), dialBound)
			conn, err := dialer(from.URL, "cross").DialContext(ctx, "tcp", other)
			cancel()
			took := time.Since(start)
			if err == nil {
				conn.Close()
				t.Errorf("round %d: %s via %s succeeded with etcd away and the lease lost; want 503", round, other, from.ID)
				continue
			}
			if status(err) != http.StatusServiceUnavailable || took > fastFail {
				t.Errorf("round %d: %s via %s: %v in %v; want 503 within %v", round, other, from.ID, err, took, fastFail)
				continue
			}
			if round == 0 {
				t.Logf("cross-node dial with etcd away: %v in %v", err, took.Round(time.Millisecond))
			}
			refused++
		}
	}
	if refused != 10 {
		t.Errorf("%d of 10 cross-node dials refused 503 fast", refused)
	}

	// etcd stays away longer than a lease, so that its return has to
	// deal with leases past their TTL.
	if rest := time.Until(stopped.Add(leaseTTL + time.Second)); rest > 0 {
		time.Sleep(rest)
	}
	etcdAway := time.Since(stopped)
	c.etcd.Start()
	restarted := time.Now()
	t.Logf("etcd started again after %v away", etcdAway.Round(time.Millisecond))
	for _, n := range c.nodes {
		n.WaitReady(20 * time.Second)
	}
	for _, from := range c.nodes {
		d := dialer(from.URL, "back")
		for _, name := range []string{"e-1", "e-2"} {
			waitPing(t, d, name, 15*time.Second)
		}
	}
	t.Logf("every name from every node %v after etcd's return", time.Since(restarted).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	for _, k := range same {
		k.check(t)
	}
	for _, n := range c.nodes { // the same processes all along
		select {
		case <-n.Exited():
			t.Errorf("%s exited", n)
		default:
		}
	}
}

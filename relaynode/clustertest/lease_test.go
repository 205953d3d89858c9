package clustertest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestLeaseLostAndRegained cuts one node from etcd, and only that node,
// for longer than its lease (a FaultProxy blackholes its etcd link),
// while etcd and the other node run on:
//   - etcd expires the cut node's lease, so the other node answers 404
//     for its name; the cut node's /readyz says 503;
//   - the cut node's own dials of its own name keep working;
//   - when the link is back the node takes a new lease and publishes its
//     live registration again, and the other node reaches the name, with
//     no restart and no re-registration by the listener.
func TestLeaseLostAndRegained(t *testing.T) {
	etcd := clusterproc.StartEtcd(t)
	proxy := relaytest.NewFaultProxy(t, strings.TrimPrefix(etcd.Endpoint(), "http://"))
	cut := nodeConfig(etcd, "n2")
	cut.Etcd = "http://" + proxy.Addr
	nodes := clusterproc.StartNodes(t, nodeConfig(etcd, "n1"), cut)
	n1, n2 := nodes[0], nodes[1]
	listenEcho(t, "l-2", n2.URL)
	waitPing(t, dialer(n1.URL, "warmup"), "l-2", 10*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	local := &tally{what: "l-2 via n2 (same node), cut from etcd"}
	traffic(&wg, stop, local, dialer(n2.URL, "traffic"), "l-2", 5000)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(200 * time.Millisecond)
	cutAt := time.Now()
	proxy.Blackhole(true)
	t.Logf("cut at %s", cutAt.Format("15:04:05.000"))
	// n1 sees the name go when etcd expires n2's lease.
	bound := leaseTTL + 10*time.Second
	d := dialer(n1.URL, "probe")
	var gone time.Duration
	for deadline := cutAt.Add(bound); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), dialBound)
		conn, err := d.DialContext(ctx, "tcp", "l-2")
		cancel()
		if err == nil {
			conn.Close()
			continue
		}
		if status(err) == http.StatusNotFound {
			gone = time.Since(cutAt)
			break
		}
	}
	if gone == 0 {
		t.Fatalf("n1 did not answer 404 for l-2 within %v of n2's cut from etcd", bound)
	}
	relaytest.Eventually(t, bound, func() bool { return n2.Ready() == http.StatusServiceUnavailable }, "n2 /readyz 503 without its lease")
	t.Logf("n2 cut from etcd: its name 404 on n1 after %v (lease TTL %v)", gone.Round(time.Millisecond), leaseTTL)

	proxy.Blackhole(false)
	proxy.ResetAll()
	back := time.Now()
	t.Logf("back at %s", back.Format("15:04:05.000"))
	n2.WaitReady(bound)
	waitPing(t, d, "l-2", bound)
	t.Logf("n2's link to etcd back: l-2 reachable from n1 again after %v", time.Since(back).Round(time.Millisecond))
	waitLayout(t, nodes, []string{n1.ID, n2.ID}, map[string]string{"l-2": n2.ID}, 5*time.Second)

	close(stop)
	wg.Wait()
	local.check(t)
}

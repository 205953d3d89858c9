package relaynode_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestClusterNodeOperatorView runs one clustered node in process (one
// actor system with remote: the most a test process may hold) against a
// real etcd, and checks what an operator sees: the cluster section of
// /status.json, the cluster series of /metrics, and /readyz following the
// lease when etcd stops and comes back.
func TestClusterNodeOperatorView(t *testing.T) {
	etcd := clusterproc.StartEtcd(t)
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := relaytest.StartOn(t, relaynode.Config{
		NodeID: "n1", ClusterEtcd: []string{etcd.Endpoint()}, ClusterListen: "127.0.0.1:0",
		Advertise: "http://" + pub.Addr().String(), ClusterLeaseTTL: time.Second,
	}, pub)
	if a := r.Node.ClusterAddr(); !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
		t.Fatalf("ClusterAddr %q, want the bound loopback address", a)
	}
	admin := startAdmin(t, r)
	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st := statusJSON(t, admin)
	c := st.Cluster
	if c == nil || c.Node != "n1" || c.Addr != r.Node.ClusterAddr() || !c.LeaseHeld || c.PublicURL != r.URL {
		t.Fatalf("cluster status %+v, want n1 at its cluster address, lease held", c)
	}
	if len(c.Names) != 1 || c.Names[0].Name != "svc" || strings.Join(c.Names[0].Nodes, ",") != "n1" {
		t.Fatalf("cluster names %+v, want svc on n1", c.Names)
	}
	if len(c.Nodes) != 1 || c.Nodes[0].Node != "n1" || strings.Join(c.Nodes[0].Names, ",") != "svc" || c.Nodes[0].ClusterAddr != c.Addr {
		t.Fatalf("cluster nodes %+v, want n1 with svc", c.Nodes)
	}
	_, metrics := get(t, admin+"/metrics")
	for _, want := range []string{
		"relay_cluster_lease_held 1", "relay_cluster_names 1",
		`relay_cluster_directory_op_seconds_count{op="publish"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d with the lease held, want 200", code)
	}
	etcd.Stop()
	relaytest.Eventually(t, 10*time.Second, func() bool {
		code, body := get(t, admin+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no cluster lease")
	}, "/readyz 503 no cluster lease after etcd stopped")
	etcd.Start()
	relaytest.Eventually(t, 20*time.Second, func() bool {
		code, _ := get(t, admin+"/readyz")
		return code == http.StatusOK
	}, "/readyz 200 again once etcd is back")
	relaytest.Eventually(t, 10*time.Second, func() bool {
		c := statusJSON(t, admin).Cluster
		return c != nil && len(c.Names) == 1 && c.Names[0].Name == "svc"
	}, "svc back in the directory after etcd returned")
}

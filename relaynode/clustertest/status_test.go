package clustertest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// clusterView reads a node's /status.json and returns its cluster
// section, failing the test when there is none.
func clusterView(t testing.TB, n *clusterproc.Node) *relaynode.ClusterStatus {
	t.Helper()
	var st relaynode.Status
	n.StatusJSON(&st)
	if st.Cluster == nil {
		t.Fatalf("%s: /status.json has no cluster section", n)
	}
	return st.Cluster
}

// viewOf reads a node's cluster view without failing the test, for a
// probe off the test's goroutine.
func viewOf(n *clusterproc.Node) (*relaynode.ClusterStatus, error) {
	code, body, err := n.Admin("/status.json")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s /status.json: %d", n, code)
	}
	var st relaynode.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s /status.json: %w", n, err)
	}
	if st.Cluster == nil {
		return nil, fmt.Errorf("%s /status.json: no cluster section", n)
	}
	return st.Cluster, nil
}

// layout is what a cluster view says: node id → its sorted names, and
// name → its sorted nodes.
func layout(cs *relaynode.ClusterStatus) (nodes, names map[string]string) {
	nodes, names = map[string]string{}, map[string]string{}
	for _, n := range cs.Nodes {
		nodes[n.Node] = strings.Join(slices.Sorted(slices.Values(n.Names)), ",")
	}
	for _, n := range cs.Names {
		names[n.Name] = strings.Join(slices.Sorted(slices.Values(n.Nodes)), ",")
	}
	return nodes, names
}

// waitLayout polls each of views' /status.json until its cluster view
// shows exactly wantNames (name → its nodes, sorted and comma-joined) and
// the nodes wantNodes, within bound, and fails the test otherwise.
func waitLayout(t testing.TB, views []*clusterproc.Node, wantNodes []string, wantNames map[string]string, bound time.Duration) {
	t.Helper()
	slices.Sort(wantNodes)
	for _, v := range views {
		deadline := time.Now().Add(bound)
		for {
			cs := clusterView(t, v)
			nodes, names := layout(cs)
			gotNodes := slices.Sorted(maps.Keys(nodes))
			if slices.Equal(gotNodes, wantNodes) && maps.Equal(names, wantNames) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's cluster view after %v: nodes %v names %v; want nodes %v names %v", v, bound, gotNodes, names, wantNodes, wantNames)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkSelf checks that a node's cluster view names it with the
// addresses it was started with, holding its lease.
func checkSelf(t testing.TB, n *clusterproc.Node) {
	t.Helper()
	cs := clusterView(t, n)
	if cs.Node != n.ID || cs.Addr != n.ClusterAddr || cs.PublicURL != n.URL || !cs.LeaseHeld {
		t.Errorf("%s's cluster view of itself: node %q addr %q url %q lease held %v; want %q %q %q true",
			n, cs.Node, cs.Addr, cs.PublicURL, cs.LeaseHeld, n.ID, n.ClusterAddr, n.URL)
	}
	for _, o := range cs.Nodes {
		if o.Node == n.ID && (o.ClusterAddr != n.ClusterAddr || o.PublicURL != n.URL) {
			t.Errorf("%s's record in the directory: %+v; want cluster_addr %s public_url %s", n, o, n.ClusterAddr, n.URL)
		}
	}
}

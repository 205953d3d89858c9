package clustertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestEveryNameFromEveryNode registers a TCP and an MTLS name at each of
// three nodes and dials every name from every node: six same-node and
// twelve cross-node dials, each carrying 64 KiB each way, byte-exact,
// ended by a half-close from the client that the server answers with its
// own. It runs with the cluster port in plaintext (loopback) and in
// mutual TLS.
func TestEveryNameFromEveryNode(t *testing.T) {
	for _, mode := range []string{"plain", "mtls"} {
		t.Run("cluster-"+mode, func(t *testing.T) {
			var extra []string
			if mode == "mtls" {
				extra = clusterTLSArgs(t)
			}
			c := startCluster(t, 3, extra...)
			meshCheck(t, c)
		})
	}
}

// clusterTLSArgs returns the flags that put a node's cluster port on
// mutual TLS with a new cluster CA.
func clusterTLSArgs(t *testing.T) []string {
	ca := relaytest.NewCA(t, "cluster CA")
	cert, key, caFile := clusterproc.WriteTLSFiles(t, ca.Issue(t, "relay-node", "127.0.0.1", "localhost"), ca.Cert)
	return []string{"-cluster-tls-cert", cert, "-cluster-tls-key", key, "-cluster-tls-ca", caFile}
}

// meshCheck registers tcp-nI and mtls-nI at each node nI of c, and dials
// every name from every node.
func meshCheck(t *testing.T, c *cluster) {
	ca := relaytest.NewCA(t, "endpoints CA")
	clientTLS := map[string]*tls.Config{}
	for _, n := range c.nodes {
		listenEcho(t, "tcp-"+n.ID, n.URL)
		name := "mtls-" + n.ID
		server, client := tlsPair(t, ca, name)
		ln, err := endpoints.ListenMTLS("tcp", name, server, n.URL)
		if err != nil {
			t.Fatalf("listen mtls %q at %s: %v", name, n, err)
		}
		relaytest.ServeEcho(t, ln)
		clientTLS[name] = client
	}
	// A name reaches the other nodes through etcd's watch: wait until each
	// TCP name answers from each node before the counted round.
	for _, from := range c.nodes {
		d := dialer(from.URL, "mesh")
		for _, at := range c.nodes {
			waitPing(t, d, "tcp-"+at.ID, 10*time.Second)
		}
	}
	// Every node's /status.json shows the whole cluster: three nodes,
	// each with its two names.
	want := map[string]string{}
	var ids []string
	for _, n := range c.nodes {
		checkSelf(t, n)
		ids = append(ids, n.ID)
		want["tcp-"+n.ID], want["mtls-"+n.ID] = n.ID, n.ID
	}
	waitLayout(t, c.nodes, ids, want, 5*time.Second)

	var same, cross int
	for _, from := range c.nodes {
		d := dialer(from.URL, "mesh-"+from.ID)
		md := endpoints.NewRelayMTLSDialer(from.URL, "mesh-"+from.ID, endpoints.WithDialTimeout(dialBound))
		for _, at := range c.nodes {
			name := "tcp-" + at.ID
			p := payload(fmt.Sprintf("%s via %s", name, from.ID), 64<<10)
			conn, err := d.Dial("tcp", name)
			if err != nil {
				t.Fatalf("dial %q via %s: %v", name, from, err)
			}
			if err := echoCheck(conn, p); err != nil {
				t.Errorf("%q via %s: %v", name, from, err)
			}
			conn.Close()

			name = "mtls-" + at.ID
			ctx, cancel := context.WithTimeout(context.Background(), dialBound)
			tc, err := md.DialContext(ctx, "tcp", name, clientTLS[name])
			cancel()
			if err != nil {
				t.Fatalf("dial mtls %q via %s: %v", name, from, err)
			}
			if err := echoCheck(tc, payload(fmt.Sprintf("%s via %s", name, from.ID), 64<<10)); err != nil {
				t.Errorf("%q via %s: %v", name, from, err)
			}
			tc.Close()
			if at == from {
				same += 2
			} else {
				cross += 2
			}
		}
	}
	if same != 6 || cross != 12 {
		t.Fatalf("dialed %d same-node and %d cross-node, want 6 and 12", same, cross)
	}
	t.Logf("%d same-node and %d cross-node dials, 64 KiB each way, byte-exact, TCP and MTLS", same, cross)
}

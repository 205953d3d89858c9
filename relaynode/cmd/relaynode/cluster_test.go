package main

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestClusterFlagsRefused checks the cluster settings the binary refuses
// before it contacts etcd: a plaintext cluster port off loopback, and a
// clustered node without an id or a public URL.
func TestClusterFlagsRefused(t *testing.T) {
	base := []string{"-listen", "127.0.0.1:0", "-cluster-etcd", "127.0.0.1:1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-node-id", "n1", "-cluster-listen", "0.0.0.0:0", "-advertise", "http://127.0.0.1:8081"}, "is not loopback and has no TLS"},
		{[]string{"-cluster-listen", "127.0.0.1:0", "-advertise", "http://127.0.0.1:8081"}, "needs a NodeID (-node-id)"},
		{[]string{"-node-id", "n1", "-cluster-listen", "127.0.0.1:0"}, "needs Advertise (-advertise)"},
		{[]string{"-node-id", "n1", "-cluster-listen", "127.0.0.1:0", "-advertise", "http://127.0.0.1:8081", "-cluster-tls-cert", "x.pem"}, "go together"},
		{[]string{"-node-id", "n1", "-cluster-listen", ":0", "-advertise", "http://127.0.0.1:8081"}, "a wildcard host needs a fixed port"},
	} {
		var stderr strings.Builder
		err := run(append(append([]string(nil), base...), c.args...), io.Discard, &stderr, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run %q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// TestClusterPortMutualTLS starts a node whose cluster port is on mutual
// TLS and checks who it lets in: a peer without a certificate and one
// with another CA's are refused; a peer with the cluster CA's gets its
// HTTP/2 server's settings.
func TestClusterPortMutualTLS(t *testing.T) {
	etcd := clusterproc.StartEtcd(t)
	ca := relaytest.NewCA(t, "cluster CA")
	cert, key, caFile := clusterproc.WriteTLSFiles(t, ca.Issue(t, "relay-node", "127.0.0.1"), ca.Cert)
	n := clusterproc.StartNode(t, clusterproc.NodeConfig{ID: "n1", Etcd: etcd.Endpoint(),
		Args: []string{"-cluster-tls-cert", cert, "-cluster-tls-key", key, "-cluster-tls-ca", caFile}})
	other := relaytest.NewCA(t, "another CA")
	try := func(certs []tls.Certificate) (int, error) {
		c, err := tls.Dial("tcp", n.ClusterAddr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1",
			Certificates: certs, NextProtos: []string{"h2"}})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
			return 0, err
		}
		buf := make([]byte, 9)
		return io.ReadFull(c, buf)
	}
	if got, err := try(nil); err == nil {
		t.Fatalf("a peer without a certificate read %d bytes from the cluster port, want refused", got)
	}
	if got, err := try([]tls.Certificate{other.Issue(t, "intruder", "127.0.0.1")}); err == nil {
		t.Fatalf("a peer with another CA's certificate read %d bytes, want refused", got)
	}
	if got, err := try([]tls.Certificate{ca.Issue(t, "peer", "127.0.0.1")}); err != nil || got != 9 {
		t.Fatalf("a peer with the cluster CA's certificate: %d bytes, %v; want the server's first frame header", got, err)
	}
}

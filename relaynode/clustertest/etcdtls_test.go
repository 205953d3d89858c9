package clustertest

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// TestEtcdOverTLS runs two nodes against an etcd that serves TLS and asks
// its clients for a certificate from its CA (-etcd-tls-cert, -etcd-tls-key,
// -etcd-tls-ca): both hold their lease, and a name registered at one is
// dialed, byte-exact, from the other.
func TestEtcdOverTLS(t *testing.T) {
	ca := relaytest.NewCA(t, "etcd CA")
	certFile, keyFile, caFile := clusterproc.WriteTLSFiles(t, ca.Issue(t, "etcd", "127.0.0.1"), ca.Cert)
	etcd := clusterproc.StartEtcdTLS(t, clusterproc.EtcdTLS{CertFile: certFile, KeyFile: keyFile, CAFile: caFile})
	if got := etcd.Endpoint(); got[:8] != "https://" {
		t.Fatalf("etcd endpoint %q, want https", got)
	}
	nodeCert, nodeKey, _ := clusterproc.WriteTLSFiles(t, ca.Issue(t, "relay-node"), ca.Cert)
	tlsArgs := []string{"-etcd-tls-cert", nodeCert, "-etcd-tls-key", nodeKey, "-etcd-tls-ca", caFile}
	nodes := clusterproc.StartNodes(t, nodeConfig(etcd, "n1", tlsArgs...), nodeConfig(etcd, "n2", tlsArgs...))
	for _, n := range nodes {
		if code := n.Ready(); code != 200 {
			t.Fatalf("%s /readyz %d, want 200 (a lease held over TLS)", n, code)
		}
	}
	listenEcho(t, "tls-etcd", nodes[0].URL)
	waitPing(t, dialer(nodes[1].Addr, "etcdtls"), "tls-etcd", 10*time.Second)
	for i := range 5 {
		if err := pingVia(dialer(nodes[1].Addr, "etcdtls"), "tls-etcd"); err != nil {
			t.Fatalf("cross-node ping %d: %v", i, err)
		}
	}
}

// TestEtcdTLSWithoutClientCert starts the binary against the same kind of
// etcd with its CA but no client certificate: etcd refuses the client,
// and the node exits at start with an error naming etcd, instead of
// serving without a lease.
func TestEtcdTLSWithoutClientCert(t *testing.T) {
	ca := relaytest.NewCA(t, "etcd CA")
	certFile, keyFile, caFile := clusterproc.WriteTLSFiles(t, ca.Issue(t, "etcd", "127.0.0.1"), ca.Cert)
	etcd := clusterproc.StartEtcdTLS(t, clusterproc.EtcdTLS{CertFile: certFile, KeyFile: keyFile, CAFile: caFile})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, clusterproc.Binary(t),
		"-listen", "127.0.0.1:0", "-cluster-etcd", etcd.Endpoint(), "-node-id", "n1",
		"-cluster-listen", "127.0.0.1:0", "-advertise", "http://127.0.0.1:1", "-etcd-tls-ca", caFile)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("relaynode without an etcd client certificate: %v (ctx %v), want an exit at start; output:\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "etcd") {
		t.Fatalf("exit %d without naming etcd:\n%s", exit.ExitCode(), out)
	}
	t.Logf("exit %d: %s", exit.ExitCode(), lastLine(string(out)))
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Package clustertest runs relay clusters for real: a Debian etcd and
// three relaynode subprocesses on loopback (relaytest/clusterproc), with
// the endpoints library as listeners and dialers, and checks the cluster's
// promises: every name from every node, byte-exact; the loss of a node;
// the loss of etcd; and conflicting registrations.
package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }

// leaseTTL is the nodes' lease: short, so that the suite stays fast.
const leaseTTL = 2 * time.Second

// dialBound bounds one dial and its echo; a dial that takes longer is a
// hang, never a timing this package asserts.
const dialBound = 5 * time.Second

// nodeArgs are the flags of every test node: every client is 127.0.0.1,
// so the per-client limits a public relay needs are lifted.
var nodeArgs = []string{
	"-dial-rate", "-1",
	"-max-registrations-per-ip", "100000",
	"-max-pending-per-ip", "100000",
	"-log-level", "info",
}

// cluster is an etcd and the nodes that share it.
type cluster struct {
	etcd  *clusterproc.Etcd
	nodes []*clusterproc.Node
}

// startCluster starts etcd and n nodes n1..nN against it, all at once,
// each with leaseTTL and extra flags.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{etcd: clusterproc.StartEtcd(t)}
	cfgs := make([]clusterproc.NodeConfig, n)
	for i := range cfgs {
		cfgs[i] = nodeConfig(c.etcd, fmt.Sprintf("n%d", i+1), extra...)
	}
	c.nodes = clusterproc.StartNodes(t, cfgs...)
	return c
}

// nodeConfig is the config of one cluster node.
func nodeConfig(etcd *clusterproc.Etcd, id string, extra ...string) clusterproc.NodeConfig {
	return clusterproc.NodeConfig{
		ID: id, Etcd: etcd.Endpoint(), LeaseTTL: leaseTTL,
		Args: append(append([]string(nil), nodeArgs...), extra...),
	}
}

// urls joins the URLs of nodes, in order, as a relay list.
func urls(nodes ...*clusterproc.Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.URL)
	}
	return strings.Join(s, ",")
}

// addrs joins the addresses of nodes, in order, as a dialer's relay list.
func addrs(nodes ...*clusterproc.Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.Addr)
	}
	return strings.Join(s, ",")
}

// listenEcho registers name at relays (one URL or a list) and serves it
// with relaytest.Echo until the test ends.
func listenEcho(t testing.TB, name, relays string, opts ...endpoints.Option) net.Listener {
	t.Helper()
	opts = append([]endpoints.Option{endpoints.WithBackoff(50*time.Millisecond, 500*time.Millisecond)}, opts...)
	ln, err := endpoints.ListenRelay("tcp", name, relays, opts...)
	if err != nil {
		t.Fatalf("listen %q at %s: %v", name, relays, err)
	}
	relaytest.ServeEcho(t, ln)
	return ln
}

// dialer returns a dialer through relays with the package's bound.
func dialer(relays, client string) *endpoints.RelayDialer {
	return endpoints.NewRelayDialer(relays, client, endpoints.WithDialTimeout(dialBound))
}

// payload returns n random bytes after a header naming what.
func payload(what string, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return append([]byte(what+"\n"), b...)
}

// echoCheck writes p on c, half-closes c, and checks that exactly p comes
// back before EOF, within dialBound.
func echoCheck(c net.Conn, p []byte) error {
	_ = c.SetDeadline(time.Now().Add(dialBound))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(p)
		if err == nil {
			err = relaytest.HalfClose(c)
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), rerr)
	}
	if !bytes.Equal(got, p) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", len(got), len(p))
	}
	return nil
}

// pingVia dials name through d and round-trips a small payload. An error
// after the dial succeeded, in the echo, is a *cutError.
func pingVia(d relaytest.ContextDialer, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialBound)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := echoCheck(c, payload(name, 512)); err != nil {
		return &cutError{err}
	}
	return nil
}

// cutError is the failure of a connection that was dialed: its pair was
// cut, as when the node splicing it dies.
type cutError struct{ err error }

func (e *cutError) Error() string { return "connection cut after the dial: " + e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

// status returns the relay's status of a refused dial (0 for another
// error, or none).
func status(err error) int {
	var re *endpoints.RelayError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

// waitPing pings name through d until it succeeds, within bound, and
// fails the test otherwise. Registration reaches other nodes through
// etcd's watch, so a fresh name may be unknown there for a moment.
func waitPing(t testing.TB, d relaytest.ContextDialer, name string, bound time.Duration) {
	t.Helper()
	if n, err := relaytest.PollPing(d, name, bound); err != nil {
		t.Fatalf("%q not reachable within %v (%d attempts): %v", name, bound, n, err)
	}
}

// tlsPair returns the server and client configs of an MTLS name: a
// server certificate for name and a client certificate, both from ca,
// each side trusting ca.
func tlsPair(t testing.TB, ca *relaytest.CA, name string) (server, client *tls.Config) {
	server = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, name, name)},
		ClientCAs:    ca.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "client")},
		RootCAs:      ca.Pool,
		MinVersion:   tls.VersionTLS13,
	}
	return server, client
}

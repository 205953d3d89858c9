package clustertest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/actors/cluster/clusterpb"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
	"github.com/clusterlink-relay/relay/wire"
)

// The Notify sender is this test binary run again as a child: an actor
// system with remote, as a peer node has, sending one Notify to a node's
// peer actor. It runs in its own process because the test process must
// stay free of protoactor's remote (goleak, and the race bar: remote is
// only race clean one system to a process).
const (
	notifyEnvTo  = "CLUSTERTEST_NOTIFY_TO"  // the node's cluster address
	notifyEnvMsg = "CLUSTERTEST_NOTIFY_MSG" // the Notify, as JSON
	notifyEnvTLS = "CLUSTERTEST_NOTIFY_TLS" // cert.pem,key.pem,ca.pem paths, comma-separated; empty: plaintext
)

// notifyAnswer is the child's one line of output.
type notifyAnswer struct {
	Status int32  `json:"status"`
	Reason string `json:"reason"`
	Err    string `json:"err,omitempty"`
}

func init() {
	if os.Getenv(notifyEnvTo) == "" {
		return
	}
	a := sendNotifyChild(os.Getenv(notifyEnvTo), os.Getenv(notifyEnvMsg), os.Getenv(notifyEnvTLS))
	_ = json.NewEncoder(os.Stdout).Encode(a)
	os.Exit(0)
}

// sendNotifyChild is the child's work: one Notify, its answer within 3s.
func sendNotifyChild(to, msg, tlsFiles string) notifyAnswer {
	var n clusterpb.Notify
	if err := json.Unmarshal([]byte(msg), &n); err != nil {
		return notifyAnswer{Err: "decode notify: " + err.Error()}
	}
	opts := []remote.ConfigOption{remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	if tlsFiles != "" {
		f := strings.Split(tlsFiles, ",")
		cert, err := tls.LoadX509KeyPair(f[0], f[1])
		if err != nil {
			return notifyAnswer{Err: err.Error()}
		}
		pem, err := os.ReadFile(f[2])
		if err != nil {
			return notifyAnswer{Err: err.Error()}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		// The answer comes back over a connection the node dials to this
		// process's own remote server, so that serves the same TLS.
		opts = []remote.ConfigOption{
			remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
				Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1"}))),
			remote.WithServerOptions(grpc.Creds(credentials.NewTLS(&tls.Config{
				Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}))),
		}
	}
	sys := actor.NewActorSystem()
	r := remote.NewRemote(sys, remote.Configure("127.0.0.1", 0, opts...))
	r.Start()
	defer r.Shutdown(false)
	res, err := sys.Root.RequestFuture(actor.NewPID(to, actors.PeerActorName), &n, 3*time.Second).Result()
	if err != nil {
		return notifyAnswer{Err: "request: " + err.Error()}
	}
	reply, ok := res.(*clusterpb.NotifyReply)
	if !ok {
		return notifyAnswer{Err: fmt.Sprintf("reply %T", res)}
	}
	return notifyAnswer{Status: reply.Status, Reason: reply.Reason}
}

// sendNotify runs the child to send n to the node's cluster port, within
// 20s, and returns its answer. tlsFiles is as notifyEnvTLS.
func sendNotify(t *testing.T, node *clusterproc.Node, n *clusterpb.Notify, tlsFiles string) notifyAnswer {
	t.Helper()
	msg, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), notifyEnvTo+"="+node.ClusterAddr, notifyEnvMsg+"="+string(msg), notifyEnvTLS+"="+tlsFiles)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		line <- sc.Text()
	}()
	var got string
	select {
	case got = <-line:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-line
	}
	_ = cmd.Wait()
	var a notifyAnswer
	if err := json.Unmarshal([]byte(got), &a); err != nil {
		t.Fatalf("notify sender: %q: %v", got, err)
	}
	return a
}

// notify returns a well-formed Notify for name and registration reg, its
// callback on an address nobody serves.
func notify(name, reg string) *clusterpb.Notify {
	tok := wire.NewToken().String()
	return &clusterpb.Notify{
		Name: name, Registration: reg, Token: tok,
		ClientName: "intruder", ClientAddr: "127.0.0.1:1",
		CallbackUrl:      "http://127.0.0.1:1" + wire.PathAccept + tok,
		DeadlineUnixNano: time.Now().Add(10 * time.Second).UnixNano(),
	}
}

// refusedCount reads relay_cluster_notify_refused_total.
func refusedCount(t *testing.T, n *clusterproc.Node) float64 {
	t.Helper()
	v, ok := n.Metric("relay_cluster_notify_refused_total")
	if !ok {
		t.Fatalf("%s: no relay_cluster_notify_refused_total in /metrics", n)
	}
	return v
}

// TestNotifyNotHeldRefused sends a node's peer actor, from another
// process, Notifies for registrations the node does not hold: a name it
// holds under another registration, a name it does not hold, and a
// malformed one. Each is refused with 502 and counted in
// relay_cluster_notify_refused_total; the server behind the held name
// hears of none of them.
func TestNotifyNotHeldRefused(t *testing.T) {
	c := startCluster(t, 1)
	n1 := c.nodes[0]
	listenEcho(t, "held", n1.URL)
	waitPing(t, dialer(n1.URL, "check"), "held", 10*time.Second)
	before := refusedCount(t, n1)
	cases := []struct {
		what string
		n    *clusterpb.Notify
	}{
		{"held name, another registration", notify("held", wire.NewToken().String())},
		{"name not held", notify("nobody", wire.NewToken().String())},
		{"malformed registration", notify("held", "not-a-token")},
	}
	for _, tc := range cases {
		a := sendNotify(t, n1, tc.n, "")
		if a.Err != "" || a.Status != http.StatusBadGateway || a.Reason == "" {
			t.Errorf("%s: %+v; want a 502 refusal with a reason", tc.what, a)
		}
		t.Logf("%s: refused %d %q", tc.what, a.Status, a.Reason)
	}
	if got := refusedCount(t, n1) - before; got != float64(len(cases)) {
		t.Errorf("relay_cluster_notify_refused_total rose by %v, want %d", got, len(cases))
	}
	// No connect event reached the listener: its one dial so far is the
	// check's, and the name still answers.
	waitPing(t, dialer(n1.URL, "check"), "held", 5*time.Second)
}

// TestClusterPortRequiresCA runs a node with its cluster port on mutual
// TLS and sends a well-formed Notify from a peer whose certificate comes
// from another CA: it gets no answer, and the node counts no Notify. A
// peer with a certificate from the cluster CA is answered.
func TestClusterPortRequiresCA(t *testing.T) {
	ca := relaytest.NewCA(t, "cluster CA")
	cert, key, caFile := clusterproc.WriteTLSFiles(t, ca.Issue(t, "relay-node", "127.0.0.1"), ca.Cert)
	c := startCluster(t, 1, "-cluster-tls-cert", cert, "-cluster-tls-key", key, "-cluster-tls-ca", caFile)
	n1 := c.nodes[0]
	listenEcho(t, "held", n1.URL)

	other := relaytest.NewCA(t, "other CA")
	oc, ok, _ := clusterproc.WriteTLSFiles(t, other.Issue(t, "intruder", "127.0.0.1"), other.Cert)
	// The intruder trusts the cluster CA (so that only its own
	// certificate is wrong) and presents one from the other CA.
	intruder := strings.Join([]string{oc, ok, caFile}, ",")
	before := refusedCount(t, n1)
	a := sendNotify(t, n1, notify("held", wire.NewToken().String()), intruder)
	if a.Err == "" {
		t.Errorf("peer with a foreign certificate was answered: %+v", a)
	}
	t.Logf("foreign peer: %s", a.Err)
	if got := refusedCount(t, n1) - before; got != 0 {
		t.Errorf("a foreign peer's Notify reached the node: refused count rose by %v", got)
	}
	member := strings.Join([]string{cert, key, caFile}, ",")
	if a := sendNotify(t, n1, notify("held", wire.NewToken().String()), member); a.Err != "" || a.Status != http.StatusBadGateway {
		t.Errorf("peer with a cluster certificate: %+v; want a 502 answer", a)
	}
}

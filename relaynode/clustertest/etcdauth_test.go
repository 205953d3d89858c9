package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

// etcdPost posts req as JSON to etcd's v3 gateway at path, within 5s.
func etcdPost(e *clusterproc.Etcd, path string, req any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(e.Endpoint()+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
	}
	return nil
}

// TestEtcdCredentials turns etcd's authentication on (a root user with a
// password) and runs two nodes with -etcd-user and the password from
// RELAYNODE_ETCD_PASSWORD: both hold their lease and a name registered at
// one is dialed from the other. A node with a wrong password exits at
// start, naming etcd.
func TestEtcdCredentials(t *testing.T) {
	etcd := clusterproc.StartEtcd(t)
	const password = "relay-test-pw"
	for _, step := range []struct {
		path string
		req  any
	}{
		{"/v3/auth/user/add", map[string]string{"name": "root", "password": password}},
		{"/v3/auth/user/grant", map[string]string{"user": "root", "role": "root"}},
		{"/v3/auth/enable", map[string]string{}},
	} {
		if err := etcdPost(etcd, step.path, step.req); err != nil {
			t.Fatalf("turn etcd auth on: %v", err)
		}
	}
	cfg := func(id string) clusterproc.NodeConfig {
		c := nodeConfig(etcd, id, "-etcd-user", "root")
		c.Env = []string{"RELAYNODE_ETCD_PASSWORD=" + password}
		return c
	}
	nodes := clusterproc.StartNodes(t, cfg("n1"), cfg("n2"))
	for _, n := range nodes {
		if code := n.Ready(); code != 200 {
			t.Fatalf("%s /readyz %d, want 200 (a lease held as root)", n, code)
		}
	}
	listenEcho(t, "auth-etcd", nodes[0].URL)
	waitPing(t, dialer(nodes[1].Addr, "etcdauth"), "auth-etcd", 10*time.Second)
	for i := range 5 {
		if err := pingVia(dialer(nodes[1].Addr, "etcdauth"), "auth-etcd"); err != nil {
			t.Fatalf("cross-node ping %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, clusterproc.Binary(t),
		"-listen", "127.0.0.1:0", "-cluster-etcd", etcd.Endpoint(), "-node-id", "n3",
		"-cluster-listen", "127.0.0.1:0", "-advertise", "http://127.0.0.1:1", "-etcd-user", "root")
	cmd.Env = []string{"RELAYNODE_ETCD_PASSWORD=wrong"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("relaynode with a wrong etcd password: %v (ctx %v), want an exit at start; output:\n%s", err, ctx.Err(), out)
	}
	last := lastLine(string(out))
	if !strings.HasPrefix(last, "relaynode: join the cluster: cluster: connect to etcd") || !strings.Contains(last, "authentication failed") {
		t.Fatalf("exit %d, last line %q: want etcd's authentication failure, while joining the cluster", exit.ExitCode(), last)
	}
	t.Logf("wrong password: exit %d: %s", exit.ExitCode(), last)
}

package clusterproc_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// etcdDo posts req to the etcd v3 JSON gateway at path and decodes the
// answer into out.
func etcdDo(e *clusterproc.Etcd, path string, req, out any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := client.Post(e.Endpoint()+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestEtcdStopStartKeepsData writes a key, stops etcd, checks it is gone
// from the network, starts it again on the same port and reads the key
// back from the same data dir.
func TestEtcdStopStartKeepsData(t *testing.T) {
	e := clusterproc.StartEtcd(t)
	var put map[string]any
	if err := etcdDo(e, "/v3/kv/put", map[string]string{"key": b64("k"), "value": b64("v1")}, &put); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	if e.Running() {
		t.Fatal("Running after Stop")
	}
	if err := etcdDo(e, "/v3/kv/range", map[string]string{"key": b64("k")}, &put); err == nil {
		t.Fatal("etcd answered while stopped")
	}
	e.Start()
	var rng struct {
		KVs []struct{ Value string } `json:"kvs"`
	}
	if err := etcdDo(e, "/v3/kv/range", map[string]string{"key": b64("k")}, &rng); err != nil {
		t.Fatal(err)
	}
	if len(rng.KVs) != 1 || rng.KVs[0].Value != b64("v1") {
		t.Fatalf("after restart: %+v, want one key with v1", rng.KVs)
	}
}

// TestSingleNode starts a relaynode without the cluster flags: its
// addresses are known, /readyz is 200, /status.json decodes, and SIGTERM
// ends it cleanly.
func TestSingleNode(t *testing.T) {
	n := clusterproc.StartNode(t, clusterproc.NodeConfig{})
	if n.AdminAddr == "" || n.URL != "http://"+n.Addr {
		t.Fatalf("node %+v", n)
	}
	if s := n.Ready(); s != http.StatusOK {
		t.Fatalf("/readyz %d, want 200", s)
	}
	var st map[string]any
	n.StatusJSON(&st)
	if len(st) == 0 {
		t.Fatal("empty /status.json")
	}
	if _, ok := n.Metric("go_goroutines"); !ok {
		t.Fatal("no go_goroutines in /metrics")
	}
	if err := n.Term(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Exited():
	default:
		t.Fatal("not exited after Term")
	}
}

// TestKill ends a node with SIGKILL: its relay port refuses at once.
func TestKill(t *testing.T) {
	n := clusterproc.StartNode(t, clusterproc.NodeConfig{})
	n.Kill()
	select {
	case <-n.Exited():
	default:
		t.Fatal("not exited after Kill")
	}
	if _, err := client.Get(n.URL + "/"); err == nil {
		t.Fatal("relay still answers after Kill")
	}
}

func TestSumMetric(t *testing.T) {
	text := "# HELP x y\nfoo_total{peer=\"a\"} 2\nfoo_total{peer=\"b\"} 3.5\nfoo_total_bar 9\nfoo_total 1\n"
	if v, ok := clusterproc.SumMetric(text, "foo_total"); !ok || v != 6.5 {
		t.Fatalf("SumMetric = %v, %v; want 6.5, true", v, ok)
	}
	if _, ok := clusterproc.SumMetric(text, "nope"); ok {
		t.Fatal("found a missing series")
	}
}

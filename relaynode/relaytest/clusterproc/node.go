package clusterproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NodeReadyBound is the default bound on a node's start: its addresses
// logged and its /readyz answering 200.
const NodeReadyBound = 30 * time.Second

// NodeConfig is how StartNode runs a relaynode.
type NodeConfig struct {
	// ID is the node's -node-id. Empty: no -node-id flag.
	ID string
	// Etcd is -cluster-etcd: the etcd endpoints, comma-separated. Empty
	// runs a single node with none of the cluster flags.
	Etcd string
	// LeaseTTL is -cluster-lease-ttl; zero leaves the binary's default.
	LeaseTTL time.Duration
	// Args are more flags, after the harness's own (-listen, -admin-listen,
	// -log-format text, and with Etcd -cluster-listen and -advertise).
	// With -tls-cert among them the node's URL is https.
	Args []string
	// ReadyBound bounds the start. Default NodeReadyBound.
	ReadyBound time.Duration
	// NoReadyWait returns as soon as the addresses are logged, without
	// waiting for /readyz: for a node started while etcd is away.
	NoReadyWait bool
	// Env is more environment of the node, as "NAME=value" (such as
	// RELAYNODE_ETCD_PASSWORD); the test's own RELAYNODE_* variables
	// never reach it.
	Env []string
	// Addr, when set, is the relay's host:port instead of a free port: to
	// start a node again where a dead one was, at the URL its clients
	// know. A start on Addr is not retried.
	Addr string
}

// Node is a relaynode subprocess on loopback.
type Node struct {
	// ID is the node's -node-id.
	ID string
	// Addr is the relay's host:port.
	Addr string
	// URL is the relay's URL, http:// or https:// and Addr: the -advertise
	// URL of a cluster node.
	URL string
	// AdminAddr is the admin listener's host:port.
	AdminAddr string
	// ClusterAddr is the cluster listener's host:port (cluster nodes only).
	ClusterAddr string

	t     testing.TB
	p     *proc
	mu    sync.Mutex
	addrs map[string]string
	got   chan struct{} // closed once every wanted address is logged
	want  []string
}

// addrLine matches the relaynode's "<what> listening" log lines.
var addrLine = regexp.MustCompile(`msg="(relay|admin|cluster) listening" addr=(\S+)`)

// StartNode starts the relaynode binary (Binary) with cfg on free
// 127.0.0.1 ports, waits for it to log its addresses and for /readyz to
// answer 200, within cfg.ReadyBound, and returns it. A start that fails,
// for a port taken in the meantime, is retried twice on new ports.
//
// In the test's cleanup the node is killed if still running, and a data
// race it reported (the binary is race-built under -race) fails the test;
// if the test failed, the node's last stderr lines are logged.
func StartNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	return StartNodes(t, cfg)[0]
}

// StartNodes starts a node for each of cfgs, as StartNode does, all at
// once, and returns them in the order of cfgs once every one is ready. If
// any fails to start, the test fails (the others are ended in cleanup).
func StartNodes(t testing.TB, cfgs ...NodeConfig) []*Node {
	t.Helper()
	bin := Binary(t)
	nodes := make([]*Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startNodeRetry(t, bin, cfg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("clusterproc: %v", err)
	}
	return nodes
}

// startNodeRetry starts a node, retrying twice on new ports when a port
// picked free was taken in the meantime.
func startNodeRetry(t testing.TB, bin string, cfg NodeConfig) (*Node, error) {
	if cfg.ReadyBound <= 0 {
		cfg.ReadyBound = NodeReadyBound
	}
	var err error
	for range 3 {
		var n *Node
		if n, err = startNode(t, bin, cfg); err == nil {
			return n, nil
		}
		if cfg.Addr != "" || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// startNode makes one attempt of StartNode.
func startNode(t testing.TB, bin string, cfg NodeConfig) (*Node, error) {
	addr := cfg.Addr
	if addr == "" {
		relayPort, err := freePort()
		if err != nil {
			return nil, err
		}
		addr = "127.0.0.1:" + strconv.Itoa(relayPort)
	}
	scheme := "http"
	if slices.ContainsFunc(cfg.Args, func(a string) bool {
		return strings.TrimLeft(a, "-") == "tls-cert" || strings.HasPrefix(strings.TrimLeft(a, "-"), "tls-cert=")
	}) {
		scheme = "https"
	}
	n := &Node{
		ID:    cfg.ID,
		Addr:  addr,
		t:     t,
		addrs: map[string]string{},
		got:   make(chan struct{}),
		want:  []string{"relay", "admin"},
	}
	n.URL = scheme + "://" + n.Addr
	args := []string{"-listen", n.Addr, "-admin-listen", "127.0.0.1:0", "-log-format", "text"}
	if cfg.ID != "" {
		args = append(args, "-node-id", cfg.ID)
	}
	if cfg.Etcd != "" {
		clusterPort, err := freePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "-cluster-etcd", cfg.Etcd,
			"-cluster-listen", "127.0.0.1:"+strconv.Itoa(clusterPort),
			"-advertise", n.URL)
		if cfg.LeaseTTL > 0 {
			args = append(args, "-cluster-lease-ttl", cfg.LeaseTTL.String())
		}
		n.want = append(n.want, "cluster")
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), cfg.Env...)
	name := "relaynode"
	if cfg.ID != "" {
		name += " " + cfg.ID
	}
	var err error
	if n.p, err = startProc(name, cmd, n.line); err != nil {
		return nil, err
	}
	t.Cleanup(n.cleanup)
	select {
	case <-n.got:
	case <-n.p.done:
		return nil, fmt.Errorf("start %s: %s", strings.Join(args, " "), n.p.describe())
	case <-time.After(cfg.ReadyBound):
		_ = n.p.kill()
		return nil, fmt.Errorf("start %s: addresses %v not all logged within %v: %s", strings.Join(args, " "), n.want, cfg.ReadyBound, n.p.describe())
	}
	n.mu.Lock()
	n.AdminAddr, n.ClusterAddr = n.addrs["admin"], n.addrs["cluster"]
	logged := n.addrs["relay"]
	n.mu.Unlock()
	if logged != n.Addr {
		_ = n.p.kill()
		return nil, fmt.Errorf("start %s: relay listening on %s, not %s", name, logged, n.Addr)
	}
	if !cfg.NoReadyWait {
		if err := n.waitReady(cfg.ReadyBound); err != nil {
			_ = n.p.kill()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	return n, nil
}

// line reads the addresses off the node's log.
func (n *Node) line(s string) {
	m := addrLine.FindStringSubmatch(s)
	if m == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.want == nil {
		return
	}
	n.addrs[m[1]] = m[2]
	for _, w := range n.want {
		if n.addrs[w] == "" {
			return
		}
	}
	n.want = nil
	close(n.got)
}

// cleanup kills the node if it still runs and reports its races.
func (n *Node) cleanup() {
	if err := n.p.kill(); err != nil {
		n.t.Errorf("clusterproc: %v", err)
	}
	if r, report := n.p.raceCount(); r > 0 {
		n.t.Errorf("clusterproc: %s (pid %d) reported %d data race(s):\n\t%s", n.p.name, n.PID(), r, report)
	} else if n.t.Failed() {
		n.t.Logf("clusterproc: %s", n.p.describe())
	}
}

// waitReady polls /readyz until it answers 200, within bound.
func (n *Node) waitReady(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	var last string
	for time.Now().Before(deadline) {
		if n.p.exited() {
			return fmt.Errorf("exited before ready: %s", n.p.describe())
		}
		status, body, err := get("http://"+n.AdminAddr+"/readyz", time.Second)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", status, strings.TrimSpace(string(body)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %v (last: %s): %s", bound, last, n.p.describe())
}

// WaitReady waits, within bound, until the node's /readyz answers 200,
// and fails the test otherwise.
func (n *Node) WaitReady(bound time.Duration) {
	n.t.Helper()
	if err := n.waitReady(bound); err != nil {
		n.t.Fatalf("clusterproc: %s: %v", n.p.name, err)
	}
}

// Ready returns the status of one GET /readyz (0 when it got no answer
// within a second).
func (n *Node) Ready() int {
	status, _, _ := get("http://"+n.AdminAddr+"/readyz", time.Second)
	return status
}

// Admin fetches path (such as "/status.json" or "/metrics") from the
// admin listener, within a few seconds, and returns its status and body.
func (n *Node) Admin(path string) (int, []byte, error) {
	return get("http://"+n.AdminAddr+path, 5*time.Second)
}

// StatusJSON fetches /status.json and decodes it into v, failing the test
// on an error or a status other than 200.
func (n *Node) StatusJSON(v any) {
	n.t.Helper()
	status, body, err := n.Admin("/status.json")
	if err != nil || status != http.StatusOK {
		n.t.Fatalf("clusterproc: %s /status.json: %d %v %s", n.p.name, status, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		n.t.Fatalf("clusterproc: %s /status.json: %v", n.p.name, err)
	}
}

// Metric returns the sum of every sample of the Prometheus series name
// (any labels) in /metrics, and whether there was any.
func (n *Node) Metric(name string) (float64, bool) {
	n.t.Helper()
	status, body, err := n.Admin("/metrics")
	if err != nil || status != http.StatusOK {
		n.t.Fatalf("clusterproc: %s /metrics: %d %v", n.p.name, status, err)
	}
	return SumMetric(string(body), name)
}

// SumMetric returns the sum of every sample of the series name (any
// labels) in a Prometheus text exposition, and whether there was any.
func SumMetric(text, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// Kill ends the node with SIGKILL, a crash, and waits for it.
func (n *Node) Kill() {
	n.t.Helper()
	if err := n.p.kill(); err != nil {
		n.t.Fatalf("clusterproc: %v", err)
	}
}

// Term sends SIGTERM, which drains the node, and waits up to grace for it
// to exit; then it is killed. It returns an error if the node did not
// exit within grace or exited with an error (a race-built binary exits 66
// after a race).
func (n *Node) Term(grace time.Duration) error {
	inTime, err := n.p.stop(terminate, grace)
	switch {
	case err != nil:
		return err
	case !inTime:
		return fmt.Errorf("clusterproc: %s did not exit within %v of SIGTERM: killed", n.p.name, grace)
	case n.p.err != nil:
		return fmt.Errorf("clusterproc: %s", n.p.describe())
	}
	return nil
}

// Exited is closed once the node's process has ended.
func (n *Node) Exited() <-chan struct{} { return n.p.done }

// PID returns the node's process id.
func (n *Node) PID() int { return n.p.cmd.Process.Pid }

// Log returns the node's last stderr lines.
func (n *Node) Log() []string { return n.p.lines() }

// String names the node and its relay address.
func (n *Node) String() string { return n.p.name + "@" + n.Addr }

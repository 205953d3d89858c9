package clusterproc

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// NodeReadyBound is the default bound on a node's start: its addresses
// logged and its /readyz answering 200.
const NodeReadyBound = procs.NodeReadyBound

// NodeConfig is how StartNode runs a relaynode (see procs.NodeConfig).
type NodeConfig = procs.NodeConfig

// Node is a relaynode subprocess on loopback: a procs.Node (ID, Addr,
// URL, AdminAddr, ClusterAddr; Term, Exited, Ready, Admin, Log, PID)
// whose Kill, WaitReady, StatusJSON and Metric fail the test on an error.
type Node struct {
	*procs.Node
	t testing.TB
}

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
// any fails to start, the test fails (procs.StartNodes ends the others).
func StartNodes(t testing.TB, cfgs ...NodeConfig) []*Node {
	t.Helper()
	started, err := procs.StartNodes(context.Background(), Binary(t), cfgs...)
	if err != nil {
		t.Fatalf("clusterproc: %v", err)
	}
	nodes := make([]*Node, len(started))
	for i, pn := range started {
		n := &Node{Node: pn, t: t}
		t.Cleanup(n.cleanup)
		nodes[i] = n
	}
	return nodes
}

// cleanup kills the node if it still runs and reports its races; if the
// test failed otherwise, it logs the node's last lines.
func (n *Node) cleanup() {
	if err := n.Close(); err != nil {
		n.t.Errorf("clusterproc: %v", err)
	} else if n.t.Failed() {
		n.t.Logf("clusterproc: %s", n.Describe())
	}
}

// WaitReady waits, within bound, until the node's /readyz answers 200,
// and fails the test otherwise.
func (n *Node) WaitReady(bound time.Duration) {
	n.t.Helper()
	if err := n.Node.WaitReady(context.Background(), bound); err != nil {
		n.t.Fatalf("clusterproc: %s: %v", n, err)
	}
}

// StatusJSON fetches /status.json and decodes it into v, failing the test
// on an error or a status other than 200.
func (n *Node) StatusJSON(v any) {
	n.t.Helper()
	status, body, err := n.Admin("/status.json")
	if err != nil || status != http.StatusOK {
		n.t.Fatalf("clusterproc: %s /status.json: %d %v %s", n, status, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		n.t.Fatalf("clusterproc: %s /status.json: %v", n, err)
	}
}

// Metric returns the sum of every sample of the Prometheus series name
// (any labels) in /metrics, and whether there was any.
func (n *Node) Metric(name string) (float64, bool) {
	n.t.Helper()
	status, body, err := n.Admin("/metrics")
	if err != nil || status != http.StatusOK {
		n.t.Fatalf("clusterproc: %s /metrics: %d %v", n, status, err)
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

// Kill ends the node with SIGKILL, a crash, and waits for it, or fails
// the test.
func (n *Node) Kill() {
	n.t.Helper()
	if err := n.Node.Kill(); err != nil {
		n.t.Fatalf("clusterproc: %v", err)
	}
}

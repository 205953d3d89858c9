package procs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NodeReadyBound is the default bound on a node's start: its addresses
// logged and its /readyz answering 200.
const NodeReadyBound = 30 * time.Second

// ErrRace is in the error of a node that reported a data race (the
// binary is race-built).
var ErrRace = errors.New("data race")

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
	// RELAYNODE_ETCD_PASSWORD); the starter's own RELAYNODE_* variables
	// never reach it.
	Env []string
	// Addr, when set, is the relay's host:port instead of a free port: to
	// start a node again where a dead one was, at the URL its clients
	// know. A start on Addr is not retried.
	Addr string
	// LogLine, if not nil, is called with each line the node writes on
	// stderr, from the goroutine that reads them.
	LogLine func(line string)
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

	p       *Proc
	logLine func(string)
	mu      sync.Mutex
	addrs   map[string]string
	got     chan struct{} // closed once every wanted address is logged
	want    []string
}

// addrLine matches the relaynode's "<what> listening" log lines.
var addrLine = regexp.MustCompile(`msg="(relay|admin|cluster) listening" addr=(\S+)`)

// StartNode starts the relaynode binary bin with cfg on free 127.0.0.1
// ports, waits for it to log its addresses and for /readyz to answer 200,
// within cfg.ReadyBound and ctx, and returns it. A start that fails, for
// a port taken in the meantime, is retried twice on new ports. ctx bounds
// the start only. The caller ends the node with Close (or Kill or Term,
// then Close); on an error nothing is left running.
func StartNode(ctx context.Context, bin string, cfg NodeConfig) (*Node, error) {
	ns, err := StartNodes(ctx, bin, cfg)
	if err != nil {
		return nil, err
	}
	return ns[0], nil
}

// StartNodes starts a node for each of cfgs, as StartNode does, all at
// once, and returns them in the order of cfgs once every one is ready. If
// any fails to start, the others are closed and the error names each
// failure.
func StartNodes(ctx context.Context, bin string, cfgs ...NodeConfig) ([]*Node, error) {
	nodes := make([]*Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startNodeRetry(ctx, bin, cfg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range nodes {
			if n != nil {
				err = errors.Join(err, n.Close())
			}
		}
		return nil, err
	}
	return nodes, nil
}

// startNodeRetry starts a node, retrying twice on new ports when a port
// picked free was taken in the meantime.
func startNodeRetry(ctx context.Context, bin string, cfg NodeConfig) (*Node, error) {
	if cfg.ReadyBound <= 0 {
		cfg.ReadyBound = NodeReadyBound
	}
	var err error
	for range 3 {
		var n *Node
		if n, err = startNode(ctx, bin, cfg); err == nil {
			return n, nil
		}
		if cfg.Addr != "" || errors.Is(err, ErrRace) || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// startNode makes one attempt of StartNode; a node that fails it is
// killed, and its races are in the error.
func startNode(ctx context.Context, bin string, cfg NodeConfig) (*Node, error) {
	n, err := launchNode(bin, cfg)
	if err != nil {
		return nil, err
	}
	if err := n.awaitStart(ctx, cfg); err != nil {
		start := fmt.Errorf("start %s (%s): %w", n.p.name, strings.Join(n.p.cmd.Args[1:], " "), err)
		return nil, errors.Join(start, n.Close())
	}
	return n, nil
}

// launchNode picks the node's ports and starts its process.
func launchNode(bin string, cfg NodeConfig) (*Node, error) {
	addr := cfg.Addr
	if addr == "" {
		relayPort, err := FreePort()
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
		ID:      cfg.ID,
		Addr:    addr,
		logLine: cfg.LogLine,
		addrs:   map[string]string{},
		got:     make(chan struct{}),
		want:    []string{"relay", "admin"},
	}
	n.URL = scheme + "://" + n.Addr
	args := []string{"-listen", n.Addr, "-admin-listen", "127.0.0.1:0", "-log-format", "text"}
	if cfg.ID != "" {
		args = append(args, "-node-id", cfg.ID)
	}
	if cfg.Etcd != "" {
		clusterPort, err := FreePort()
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
	cmd.Env = append(CleanEnv(), cfg.Env...)
	name := "relaynode"
	if cfg.ID != "" {
		name += " " + cfg.ID
	}
	var err error
	if n.p, err = Start(name, cmd, n.line); err != nil {
		return nil, err
	}
	return n, nil
}

// awaitStart waits for the node's addresses and, unless cfg.NoReadyWait,
// its /readyz.
func (n *Node) awaitStart(ctx context.Context, cfg NodeConfig) error {
	select {
	case <-n.got:
	case <-n.p.done:
		return fmt.Errorf("%s", n.p.Describe())
	case <-ctx.Done():
		return fmt.Errorf("addresses %v not all logged: %w: %s", n.wanted(), ctx.Err(), n.p.Describe())
	case <-time.After(cfg.ReadyBound):
		return fmt.Errorf("addresses %v not all logged within %v: %s", n.wanted(), cfg.ReadyBound, n.p.Describe())
	}
	n.mu.Lock()
	n.AdminAddr, n.ClusterAddr = n.addrs["admin"], n.addrs["cluster"]
	logged := n.addrs["relay"]
	n.mu.Unlock()
	if logged != n.Addr {
		return fmt.Errorf("relay listening on %s, not %s", logged, n.Addr)
	}
	if cfg.NoReadyWait {
		return nil
	}
	return n.WaitReady(ctx, cfg.ReadyBound)
}

// wanted returns the addresses not logged yet.
func (n *Node) wanted() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.want)
}

// line reads the addresses off the node's log and passes the line on.
func (n *Node) line(s string) {
	if n.logLine != nil {
		n.logLine(s)
	}
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

// WaitReady polls /readyz until it answers 200, within bound and ctx.
func (n *Node) WaitReady(ctx context.Context, bound time.Duration) error {
	var last string
	err := poll(ctx, bound, func() (bool, error) {
		if n.p.Exited() {
			return false, errExited
		}
		status, body, err := get(ctx, "http://"+n.AdminAddr+"/readyz", time.Second)
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusOK:
			return true, nil
		default:
			last = fmt.Sprintf("%d %s", status, strings.TrimSpace(string(body)))
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("exited before ready: %s", n.p.Describe())
	}
	return fmt.Errorf("/readyz not 200 (last: %s): %w: %s", last, err, n.p.Describe())
}

// Ready returns the status of one GET /readyz (0 when it got no answer
// within a second).
func (n *Node) Ready() int {
	status, _, _ := get(context.Background(), "http://"+n.AdminAddr+"/readyz", time.Second)
	return status
}

// Admin fetches path (such as "/status.json" or "/metrics") from the
// admin listener, within a few seconds, and returns its status and body.
func (n *Node) Admin(path string) (int, []byte, error) {
	return get(context.Background(), "http://"+n.AdminAddr+path, 5*time.Second)
}

// Kill ends the node with SIGKILL, a crash, and waits for it.
func (n *Node) Kill() error { return n.p.Kill() }

// Term sends SIGTERM, which drains the node, and waits up to grace for it
// to exit; then it is killed. It returns an error if the node did not
// exit within grace or exited with an error (a race-built binary exits 66
// after a race).
func (n *Node) Term(grace time.Duration) error {
	inTime, err := n.p.Stop(syscall.SIGTERM, grace)
	switch {
	case err != nil:
		return err
	case !inTime:
		return fmt.Errorf("%s did not exit within %v of SIGTERM: killed", n.p.name, grace)
	case n.p.err != nil:
		return fmt.Errorf("%s", n.p.Describe())
	}
	return nil
}

// Close kills the node if it still runs and waits for it. Its error says
// so if the node was not reaped, and holds ErrRace, with the reports,
// if the node reported a data race. It may be called more than once.
func (n *Node) Close() error {
	err := n.p.Kill()
	if r, report := n.p.Races(); r > 0 {
		err = errors.Join(err, fmt.Errorf("%s (pid %d) reported %d %w(s):\n\t%s", n.p.name, n.PID(), r, ErrRace, report))
	}
	return err
}

// Exited is closed once the node's process has ended.
func (n *Node) Exited() <-chan struct{} { return n.p.done }

// PID returns the node's process id.
func (n *Node) PID() int { return n.p.PID() }

// Log returns the node's last stderr lines.
func (n *Node) Log() []string { return n.p.Lines() }

// Describe returns the node's state and last stderr lines, for an error.
func (n *Node) Describe() string { return n.p.Describe() }

// String names the node and its relay address.
func (n *Node) String() string { return n.p.name + "@" + n.Addr }

package procs_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// The relaynode binary is clusterproc's (built once, with -race when
// this test binary is), so that the nodes here keep the race bar too.
func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }

// gone reports whether no process pid exists any more (Linux: /proc).
func gone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

// children returns the pids of this process's children named comm, from
// /proc (Linux).
func children(t *testing.T, comm string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		var state byte
		var ppid int
		if _, err := fmt.Sscanf(s[j+1:], " %c %d", &state, &ppid); err != nil {
			continue
		}
		if ppid == os.Getpid() && s[i+1:j] == comm {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestNode starts a single relaynode: its addresses are known, /readyz
// answers 200, LogLine saw its address lines, SIGTERM ends it cleanly and
// Close after that is no error; the process is gone.
func TestNode(t *testing.T) {
	var addrLines atomic.Int32
	n, err := procs.StartNode(context.Background(), clusterproc.Binary(t), procs.NodeConfig{
		LogLine: func(s string) {
			if strings.Contains(s, " listening") {
				addrLines.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.AdminAddr == "" || n.URL != "http://"+n.Addr || n.ClusterAddr != "" {
		t.Fatalf("node %+v", n)
	}
	if s := n.Ready(); s != http.StatusOK {
		t.Fatalf("/readyz %d, want 200", s)
	}
	if got := addrLines.Load(); got < 2 {
		t.Fatalf("LogLine saw %d listening lines, want relay and admin", got)
	}
	pid := n.PID()
	if err := n.Term(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close after Term: %v", err)
	}
	if !gone(pid) {
		t.Fatalf("pid %d still there after Term and Close", pid)
	}
}

// TestNodeBadFlag starts a node with a flag the binary does not know: the
// start fails naming the flag, and is not retried.
func TestNodeBadFlag(t *testing.T) {
	_, err := procs.StartNode(context.Background(), clusterproc.Binary(t), procs.NodeConfig{Args: []string{"-no-such-flag"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-flag") || !strings.Contains(err.Error(), "start relaynode") {
		t.Fatalf("StartNode with a bad flag: %v", err)
	}
	if kids := children(t, "relaynode"); len(kids) > 0 {
		t.Fatalf("relaynode children left: %v", kids)
	}
}

// TestNodeCancelled starts nodes under a cancelled context: the start
// gives the context's error, and the node it launched is killed.
func TestNodeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := procs.StartNodes(ctx, clusterproc.Binary(t), procs.NodeConfig{ID: "a"}, procs.NodeConfig{ID: "b"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("StartNodes under a cancelled context: %v", err)
	}
	if kids := children(t, "relaynode"); len(kids) > 0 {
		t.Fatalf("relaynode children left: %v", kids)
	}
	if !strings.Contains(err.Error(), "relaynode a") || !strings.Contains(err.Error(), "relaynode b") {
		t.Fatalf("error names not both nodes: %v", err)
	}
}

// TestEtcd starts etcd, stops it, starts it again and closes it; a second
// Stop or Start is an error, a second Close is none, and the process is
// gone after Close.
func TestEtcd(t *testing.T) {
	bin, err := procs.EtcdBinary("")
	if err != nil {
		t.Skip(err)
	}
	e, err := procs.StartEtcd(context.Background(), procs.EtcdConfig{Bin: bin, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.Endpoint(), "http://127.0.0.1:") || e.PID() <= 0 || !e.Running() {
		t.Fatalf("etcd at %q pid %d running %v", e.Endpoint(), e.PID(), e.Running())
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err == nil || e.Running() || e.PID() != 0 {
		t.Fatalf("second Stop: %v; running %v, pid %d", err, e.Running(), e.PID())
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err == nil {
		t.Fatal("Start while running: no error")
	}
	pid := e.PID()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil || e.Running() || !gone(pid) {
		t.Fatalf("second Close: %v; running %v; pid %d gone %v", err, e.Running(), pid, gone(pid))
	}
}

// TestStartEtcdErrors: no data dir, and an etcd that exits at start.
func TestStartEtcdErrors(t *testing.T) {
	if _, err := procs.StartEtcd(context.Background(), procs.EtcdConfig{Bin: "/bin/true"}); err == nil {
		t.Fatal("StartEtcd without a data dir: no error")
	}
	_, err := procs.StartEtcd(context.Background(), procs.EtcdConfig{Bin: "/bin/false", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("StartEtcd of /bin/false: %v", err)
	}
}

// TestEtcdBinary: a first path that exists wins; one that does not is
// passed over.
func TestEtcdBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := procs.EtcdBinary(self); err != nil || got != self {
		t.Fatalf("EtcdBinary(%s) = %q, %v", self, got, err)
	}
	t.Setenv("ETCD_BIN", self)
	if got, err := procs.EtcdBinary(filepath.Join(t.TempDir(), "none")); err != nil || got != self {
		t.Fatalf("EtcdBinary(missing) with ETCD_BIN set = %q, %v; want $ETCD_BIN", got, err)
	}
}

// TestProcRaces feeds a race report shaped as the detector writes it on
// stderr: Races counts it and keeps its lines; SIGTERM ends the process.
func TestProcRaces(t *testing.T) {
	script := `exec >&2; echo "=================="; echo "WARNING: DATA RACE"; echo "Write at 0x1 by goroutine 7:"; echo "=================="; echo after; exec sleep 30`
	var lines atomic.Int32
	p, err := procs.Start("racer", exec.Command("/bin/sh", "-c", script), func(string) { lines.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	for i := 0; i < 200 && lines.Load() < 5; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	n, report := p.Races()
	if n != 1 || !strings.Contains(report, "Write at 0x1") || strings.Contains(report, "after") {
		t.Fatalf("Races = %d, %q; want 1 report without the line after it", n, report)
	}
	inTime, err := p.Stop(syscall.SIGTERM, 5*time.Second)
	if err != nil || !inTime {
		t.Fatalf("Stop: %v, in time %v", err, inTime)
	}
	var exit *exec.ExitError
	if !errors.As(p.Err(), &exit) {
		t.Fatalf("Err after SIGTERM: %v, want an exit error", p.Err())
	}
}

// TestProcPipes: pipes the caller made stay the caller's; the process
// echoes a line and exits when its stdin closes.
func TestProcPipes(t *testing.T) {
	cmd := exec.Command("/bin/cat")
	in, stdin := io.Pipe()
	cmd.Stdin = in
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := procs.Start("cat", cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if _, err := io.WriteString(stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	stdin.Close()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cat did not exit after its stdin closed")
	}
	if p.Err() != nil {
		t.Fatalf("Err: %v", p.Err())
	}
}

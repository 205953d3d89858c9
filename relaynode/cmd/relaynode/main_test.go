package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }

// build compiles the binary into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relaynode")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer collects a process's stderr for concurrent reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listenLine = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

// relayProcess is the relay binary running under a test.
type relayProcess struct {
	cmd    *exec.Cmd
	addr   string      // the address it listens on, from its log
	logs   *syncBuffer // its stderr
	copied chan struct{}
	done   bool
}

// startRelay runs bin with args (which must include -listen) and waits,
// at most 20s, for its listen line. The process is killed in cleanup if
// the test did not stop it.
func startRelay(t *testing.T, bin string, args ...string) *relayProcess {
	t.Helper()
	p := &relayProcess{cmd: exec.Command(bin, args...), logs: &syncBuffer{}, copied: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	addrc := make(chan string, 1)
	go func() {
		defer close(p.copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			if m := listenLine.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
	}()
	select {
	case p.addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatalf("no listen line; logs:\n%s", p.logs)
	}
	return p
}

// stop signals the process and returns how it exited. It reads stderr to
// its end before Wait, which closes the pipe and would drop the last
// lines. Only the first call signals and waits.
func (p *relayProcess) stop(sig os.Signal) error {
	if p.done {
		return nil
	}
	p.done = true
	p.cmd.Process.Signal(sig)
	<-p.copied
	return p.cmd.Wait()
}

// waitLog waits, at most d, for a log line containing s.
func (p *relayProcess) waitLog(t *testing.T, s string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); !strings.Contains(p.logs.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within %v:\n%s", s, d, p.logs)
		}
	}
}

// TestBinaryEndToEnd runs the real binary, dials through it, and stops it
// with SIGTERM.
func TestBinaryEndToEnd(t *testing.T) {
	p := startRelay(t, build(t), "-listen", "127.0.0.1:0", "-grace", "2s", "-mailbox-pending", "bounded:256")
	addr, logs := p.addr, p.logs

	ln, err := endpoints.ListenRelay("tcp", "e2e", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.ServeEcho(t, ln)
	d := endpoints.NewRelayDialer(addr, "tester")
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := relaytest.Ping(ctx, d, "e2e")
		cancel()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	srv.Stop()

	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v; logs:\n%s", err, logs)
	}
	out := logs.String()
	for _, want := range []string{`msg=registered name=e2e`, `msg=draining signal=terminated`, `msg=stopped`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "level=INFO"); n != 5 {
		t.Errorf("%d info lines, want 5 (listening, registered, unregistered, draining, stopped): no per-connection info:\n%s", n, out)
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		wantOut string
	}{
		{args: []string{"-h"}, wantErr: "flag: help requested", wantOut: "-mailbox-directory"},
		{args: []string{"-trusted-proxies", "10.0.0.0/33"}, wantErr: "-trusted-proxies"},
		{args: []string{"-mailbox-pair", "lossy"}, wantErr: "unknown mailbox kind"},
		{args: []string{"-log-level", "loud"}, wantErr: "-log-level"},
		{args: []string{"-heartbeat", "1ns"}, wantErr: "Heartbeat"},
		{args: []string{"stray"}, wantErr: "unexpected arguments"},
		{args: []string{"-listen", "256.0.0.1:99999"}, wantErr: "listen"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, io.Discard, &out, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

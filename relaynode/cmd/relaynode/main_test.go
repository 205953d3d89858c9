package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
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
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// TestBinaryEndToEnd runs the real binary, dials through it, and stops it
// with SIGTERM.
func TestBinaryEndToEnd(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-listen", "127.0.0.1:0", "-grace", "2s", "-mailbox-pending", "bounded:256")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	addrc := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := listenLine.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no listen line; logs:\n%s", logs)
	}

	ln, err := endpoints.ListenRelay("tcp", "e2e", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := endpoints.DialTCP("tcp", "e2e", addr, "tester")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Write([]byte("ping"))
		c.(interface{ CloseWrite() error }).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "ping" {
			t.Fatalf("dial %d: echo %q, %v", i, got, err)
		}
	}
	ln.Close()
	<-served

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Read stderr to its end before Wait, which closes the pipe and would
	// drop the last lines.
	<-copied
	if err := cmd.Wait(); err != nil {
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
			err := run(tt.args, &out, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

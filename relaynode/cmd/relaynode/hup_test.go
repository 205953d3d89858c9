package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestSIGHUPReloadsAuth runs the binary with -auth-file, rewrites the file,
// sends SIGHUP, and checks that the new token registers and the old one is
// refused with 403.
func TestSIGHUPReloadsAuth(t *testing.T) {
	bin := build(t)
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte("register svc "+sha("old")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-listen", "127.0.0.1:0", "-auth-file", auth)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	addrc := make(chan string, 1)
	reloaded := make(chan struct{}, 1)
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
			if strings.Contains(line, "auth file reloaded") {
				reloaded <- struct{}{}
			}
		}
	}()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-copied // read stderr to its end before Wait closes the pipe
		cmd.Wait()
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatalf("no listen line:\n%s", logs)
	}
	if strings.Contains(logs.String(), "open mode") {
		t.Fatalf("warned about open mode with an auth file:\n%s", logs)
	}
	url := "http://" + addr
	ln, err := endpoints.ListenRelay("tcp", "svc", url, endpoints.WithToken("old"))
	if err != nil {
		t.Fatalf("old token before reload: %v", err)
	}
	ln.Close()

	if err := os.WriteFile(auth, []byte("register svc "+sha("new")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatalf("no reload line after SIGHUP:\n%s", logs)
	}
	var re *endpoints.RelayError
	if _, err := endpoints.ListenRelay("tcp", "svc", url, endpoints.WithToken("old")); !errors.As(err, &re) || re.Status != 403 {
		t.Fatalf("old token after reload: %v, want 403", err)
	}
	ln, err = endpoints.ListenRelay("tcp", "svc", url, endpoints.WithToken("new"))
	if err != nil {
		t.Fatalf("new token after reload: %v", err)
	}
	ln.Close()
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
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
	p := startRelay(t, bin, "-listen", "127.0.0.1:0", "-auth-file", auth)
	addr, logs := p.addr, p.logs
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
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "auth file reloaded", 10*time.Second)
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

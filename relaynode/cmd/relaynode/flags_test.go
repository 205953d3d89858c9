package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEnvConfig(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "")
	hb := fs.Duration("heartbeat", time.Second, "")
	env := map[string]string{"RELAYNODE_LISTEN": "127.0.0.1:9999", "RELAYNODE_HEARTBEAT": "3s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	// A flag on the command line wins over the environment.
	if err := fs.Parse([]string{"-heartbeat", "5s"}); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:9999" || *hb != 5*time.Second {
		t.Fatalf("listen %q heartbeat %v; want env listen and flag heartbeat", *listen, *hb)
	}
	env["RELAYNODE_HEARTBEAT"] = "soon"
	err := applyEnv(fs, lookup)
	if err == nil || !strings.Contains(err.Error(), "RELAYNODE_HEARTBEAT") {
		t.Fatalf("bad env value: %v, want an error naming the variable", err)
	}
}

func TestHelpGroupsAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, io.Discard, &out, nil); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	help := out.String()
	last := -1
	for _, topic := range []string{"network:", "TLS and auth:", "limits:", "actors:", "admin:"} {
		i := strings.Index(help, "\n"+topic+"\n")
		if i < 0 || i < last {
			t.Fatalf("help lacks topic %q in order:\n%s", topic, help)
		}
		last = i
	}
	for _, f := range []string{"-admin-listen", "-mailbox-pair", "-tls-cert", "RELAYNODE_LISTEN"} {
		if !strings.Contains(help, f) {
			t.Errorf("help lacks %s", f)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-version"}, &stdout, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "relaynode ") || !strings.Contains(stdout.String(), "github.com/clusterlink-relay/relay") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("-version printed %q to stdout", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Fatalf("-version wrote %q to stderr, want nothing", stderr.String())
	}
}

// TestVersionBinary builds the binary stamped with -ldflags -X main.version
// and checks that -version prints that version to stdout, nothing to
// stderr, and exits 0.
func TestVersionBinary(t *testing.T) {
	const stamp = "v0.1.0-test.7"
	bin := filepath.Join(t.TempDir(), "relaynode")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+stamp, "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-version")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("relaynode -version: %v (want exit 0); stderr %q", err, stderr.String())
	}
	if first, _, _ := strings.Cut(stdout.String(), "\n"); first != "relaynode "+stamp {
		t.Fatalf("first stdout line %q, want %q; stdout:\n%s", first, "relaynode "+stamp, stdout.String())
	}
	if stderr.Len() != 0 {
		t.Fatalf("stderr %q, want empty", stderr.String())
	}

	// The running relay reports the same version on /status.json.
	p := startRelay(t, bin, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0")
	p.waitLog(t, `msg="admin listening"`, 10*time.Second)
	m := regexp.MustCompile(`msg="admin listening" addr=(\S+)`).FindStringSubmatch(p.logs.String())
	if m == nil {
		t.Fatalf("no admin address in the logs:\n%s", p.logs)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + m[1] + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Version string `json:"version"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Version != stamp {
		t.Fatalf("/status.json version %q (%v), want %q", st.Version, err, stamp)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

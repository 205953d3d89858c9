package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// mtlsBins are the MTLS example's binaries and relaynode. They go to their
// own directory: the echo example's server and client have the same names.
var mtlsBins = &binSet{sub: "mtls", pkgs: []string{"./mtls/gencerts", "./mtls/server", "./mtls/client", "../relaynode/cmd/relaynode"}}

// mtlsBin returns the path of an MTLS example binary ("gencerts", "server"
// or "client") or of "relaynode", building them on first use.
func mtlsBin(t testing.TB, name string) string { return mtlsBins.path(t, name) }

// gencerts runs gencerts into a new temp dir and returns the dir.
func gencerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := mtlsBin(t, "gencerts") // builds first, outside the run's deadline
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("gencerts: %v\n%s", err, out)
	}
	return dir
}

// runClient runs the MTLS client with args and returns its stdout, stderr
// and error.
func runClient(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	bin := mtlsBin(t, "client") // builds first, outside the run's deadline
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-timeout", "60s"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("client stdout:\n%s\nclient stderr:\n%s", stdout.Bytes(), stderr.Bytes())
	return stdout.String(), stderr.String(), err
}

// TestMTLSExample runs gencerts, the MTLS server and the MTLS client: over
// a plain in-process relay, and over the relaynode binary serving TLS with
// gencerts' relay certificate (-tls-cert, -tls-key).
func TestMTLSExample(t *testing.T) {
	t.Parallel()
	certs := gencerts(t)

	t.Run("plain-relay", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		testMTLSExample(t, certs, r.URL, r.Addr)
	})

	t.Run("tls-relay-binary", func(t *testing.T) {
		relay := startProc(t, mtlsBin(t, "relaynode"), "-listen", "127.0.0.1:0",
			"-tls-cert", filepath.Join(certs, "relay.pem"), "-tls-key", filepath.Join(certs, "relay-key.pem"))
		addrRE := regexp.MustCompile(`relay listening"? addr=(\S+) scheme=https`)
		var addr string
		relaytest.Eventually(t, time.Minute, func() bool {
			m := addrRE.FindStringSubmatch(relay.out.String())
			if m != nil {
				addr = m[1]
			}
			return m != nil
		}, "the relaynode binary did not log its https address")
		testMTLSExample(t, certs, "https://"+addr, "https://"+addr)
		relay.interrupt(t)
	})
}

// testMTLSExample runs the MTLS server registered through serverRelay and
// the client dialing through clientRelay, with the certificates in certs,
// and checks the echo, the verified certificates and the server's log.
func testMTLSExample(t *testing.T, certs, serverRelay, clientRelay string) {
	srv := startProc(t, mtlsBin(t, "server"), "-relay", serverRelay, "-certs", certs)
	relaytest.Eventually(t, time.Minute, func() bool {
		return strings.Contains(srv.out.String(), `msg=listening addr=secure-echo@`)
	}, "the MTLS server did not register")

	const msg = "plaintext only the two ends can read"
	stdout, _, err := runClient(t, "-relay", clientRelay, "-certs", certs, "-client", "test-client", "-msg", msg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	for _, want := range []string{"echo: " + msg + "\n", `server certificate "secure-echo" verified, TLS 1.3`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("client stdout lacks %q", want)
		}
	}
	out := srv.interrupt(t)
	for _, want := range []string{"cn=mtls-client", "remote=127.0.0.1:", "client=test-client", "bytes=" + fmt.Sprint(len(msg))} {
		if !strings.Contains(out, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
}

// TestMTLSExampleWrongCA runs the client with certificates from another
// gencerts run: it does not trust the server's certificate, and exits 1
// with the verification error.
func TestMTLSExampleWrongCA(t *testing.T) {
	t.Parallel()
	certs, otherCerts := gencerts(t), gencerts(t)
	r := relaytest.Start(t, relaynode.Config{})
	srv := startProc(t, mtlsBin(t, "server"), "-relay", r.URL, "-certs", certs)
	relaytest.Eventually(t, time.Minute, func() bool {
		return strings.Contains(srv.out.String(), `msg=listening addr=secure-echo@`)
	}, "the MTLS server did not register")

	_, stderr, err := runClient(t, "-relay", r.Addr, "-certs", otherCerts)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("client with another CA: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr, "x509: certificate signed by unknown authority") {
		t.Errorf("client stderr lacks the verification error")
	}
	if out := srv.interrupt(t); strings.Contains(out, "msg=accepted") {
		t.Errorf("the server accepted a client it should not have")
	}
}

package relaynode_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

func sum(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// writeAuth writes an auth file and returns its path.
func writeAuth(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func relayStatus(err error) int {
	var re *endpoints.RelayError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

func TestAuthFileErrors(t *testing.T) {
	for _, tt := range []struct {
		body, want string
	}{
		{"svc", "line 1"},
		{"# ok\nsvc nothex", "line 2: want 64 hex digits"},
		{"allow svc " + sum("x"), `line 1: unknown rule "allow"`},
		{"[ " + sum("x"), "bad glob"},
	} {
		p := writeAuth(t, tt.body)
		_, err := relaynode.New(relaynode.Config{AuthFile: p})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want error containing %q", tt.body, err, tt.want)
		}
	}
	if _, err := relaynode.New(relaynode.Config{AuthFile: "/nonexistent/auth"}); err == nil {
		t.Error("missing auth file: no error")
	}
}

// echoOnce pings name through the relay at addr with opts: nil, or the
// dial's error. An echo that fails after a dial fails the test.
func echoOnce(t *testing.T, addr, name string, opts ...endpoints.Option) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := relaytest.Ping(ctx, endpoints.NewRelayDialer(addr, "tester", opts...), name)
	if err != nil && relayStatus(err) == 0 {
		t.Fatalf("echo: %v", err)
	}
	return err
}

// TestS5AuthMode is check S5 with an auth file: no or wrong credentials are
// refused (401, 403) and the incumbent keeps receiving; matching
// credentials join the name's group and dials are spread over it.
func TestS5AuthMode(t *testing.T) {
	p := writeAuth(t, "# svc belongs to team A", "register svc "+sum("tokA"), "register other "+sum("tokB"))
	r := relaytest.Start(t, relaynode.Config{AuthFile: p})
	a, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("tokA"))
	if err != nil {
		t.Fatal(err)
	}
	n1 := relaytest.ServeEcho(t, a)
	for _, tt := range []struct {
		name  string
		opts  []endpoints.Option
		want  int
		reply string
	}{
		{"no token", nil, 401, "credentials required"},
		{"wrong token", []endpoints.Option{endpoints.WithToken("nope")}, 403, "credentials do not cover"},
		{"another name's token", []endpoints.Option{endpoints.WithToken("tokB")}, 403, "credentials do not cover"},
	} {
		_, err := endpoints.ListenRelay("tcp", "svc", r.URL, tt.opts...)
		var re *endpoints.RelayError
		if !errors.As(err, &re) || re.Status != tt.want || !strings.Contains(re.Reason, tt.reply) {
			t.Fatalf("%s: %v, want %d", tt.name, err, tt.want)
		}
	}
	// The incumbent keeps receiving.
	if err := echoOnce(t, r.Addr, "svc"); err != nil {
		t.Fatal(err)
	}
	// A second member with the right token joins the group.
	b, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("tokA"))
	if err != nil {
		t.Fatalf("second member: %v", err)
	}
	n2 := relaytest.ServeEcho(t, b)
	before := n1.Accepted()
	const dials = 10
	for i := range dials {
		if err := echoOnce(t, r.Addr, "svc"); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	if got1, got2 := n1.Accepted()-before, n2.Accepted(); got1 != dials/2 || got2 != dials/2 {
		t.Fatalf("round robin: member 1 got %d, member 2 got %d of %d", got1, got2, dials)
	}
	t.Logf("S5 auth mode: 3 refusals (401, 403, 403); group of 2 served %d/%d dials", dials/2, dials/2)
}

// TestS5OpenMode is check S5 without auth: a duplicate gets 409 and the
// incumbent is untouched.
func TestS5OpenMode(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	a, err := endpoints.ListenRelay("tcp", "svc", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	n := relaytest.ServeEcho(t, a)
	for range 5 {
		if _, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("anything")); relayStatus(err) != http.StatusConflict {
			t.Fatalf("duplicate: %v, want 409", err)
		}
	}
	for range 3 {
		if err := echoOnce(t, r.Addr, "svc"); err != nil {
			t.Fatal(err)
		}
	}
	if n.Accepted() != 3 {
		t.Fatalf("incumbent accepted %d, want 3", n.Accepted())
	}
}

// TestDialAuth checks per-name dial tokens: refused with 401 or 403 before
// any event reaches the server.
func TestDialAuth(t *testing.T) {
	p := writeAuth(t, "register * "+sum("reg"), "dial private-* "+sum("letmein"))
	r := relaytest.Start(t, relaynode.Config{AuthFile: p})
	ln, err := endpoints.ListenRelay("tcp", "private-db", r.URL, endpoints.WithToken("reg"))
	if err != nil {
		t.Fatal(err)
	}
	n := relaytest.ServeEcho(t, ln)
	pub, err := endpoints.ListenRelay("tcp", "public", r.URL, endpoints.WithToken("reg"))
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ServeEcho(t, pub)
	if err := echoOnce(t, r.Addr, "private-db"); relayStatus(err) != http.StatusUnauthorized {
		t.Fatalf("dial without token: %v, want 401", err)
	}
	if err := echoOnce(t, r.Addr, "private-db", endpoints.WithDialToken("guess")); relayStatus(err) != http.StatusForbidden {
		t.Fatalf("dial with wrong token: %v, want 403", err)
	}
	if n.Accepted() != 0 || r.Node.Stats().Actors.Kinds[actors.KindPending].Processed != 0 {
		t.Fatalf("refused dials reached the server: %d accepted", n.Accepted())
	}
	if err := echoOnce(t, r.Addr, "private-db", endpoints.WithDialToken("letmein")); err != nil {
		t.Fatalf("dial with the token: %v", err)
	}
	if err := echoOnce(t, r.Addr, "public"); err != nil {
		t.Fatalf("dial to an unguarded name: %v", err)
	}
}

// TestReloadAuth checks ReloadAuth swaps the rules, and keeps the old ones
// on a bad file.
func TestReloadAuth(t *testing.T) {
	p := writeAuth(t, "register svc "+sum("old"))
	r := relaytest.Start(t, relaynode.Config{AuthFile: p})
	os.WriteFile(p, []byte("register svc "+sum("new")+"\n"), 0o600)
	if err := r.Node.ReloadAuth(); err != nil {
		t.Fatal(err)
	}
	if _, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("old")); relayStatus(err) != http.StatusForbidden {
		t.Fatalf("old token after reload: %v, want 403", err)
	}
	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("new"))
	if err != nil {
		t.Fatalf("new token after reload: %v", err)
	}
	ln.Close()
	os.WriteFile(p, []byte("garbage\n"), 0o600)
	if err := r.Node.ReloadAuth(); err == nil {
		t.Fatal("reload of a bad file: no error")
	}
	ln, err = endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("new"))
	if err != nil {
		t.Fatalf("rules lost after a failed reload: %v", err)
	}
	ln.Close()
}

// TestClientCertAuth checks mTLS to the relay: a verified client
// certificate registers the names its SANs cover, and only those.
func TestClientCertAuth(t *testing.T) {
	relayCA := relaytest.NewCA(t, "relay CA")
	clientCA := relaytest.NewCA(t, "tenant CA")
	r := relaytest.Start(t, relaynode.Config{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{relayCA.Issue(t, "relay", "127.0.0.1")},
		ClientCAs:    clientCA.Pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}})
	url := "https://" + r.Addr
	if r.Node.OpenMode() {
		t.Fatal("a relay that verifies client certificates is not in open mode")
	}
	cert := clientCA.Issue(t, "tenant", "svc-*")
	opt := endpoints.WithRelayTLS(&tls.Config{RootCAs: relayCA.Pool, Certificates: []tls.Certificate{cert}})
	ln, err := endpoints.ListenRelay("tcp", "svc-a", url, opt)
	if err != nil {
		t.Fatalf("covered name: %v", err)
	}
	ln.Close()
	if _, err := endpoints.ListenRelay("tcp", "other", url, opt); relayStatus(err) != http.StatusForbidden {
		t.Fatalf("name outside the SANs: %v, want 403", err)
	}
	noCert := endpoints.WithRelayTLS(&tls.Config{RootCAs: relayCA.Pool})
	if _, err := endpoints.ListenRelay("tcp", "svc-b", url, noCert); relayStatus(err) != http.StatusUnauthorized {
		t.Fatalf("no client certificate: %v, want 401", err)
	}
}

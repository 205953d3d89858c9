package endpoints_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestBadRelayAddress checks that every malformed relay address is
// ErrBadRelayAddress naming the input, for dialers and listeners alike,
// before anything is dialed.
func TestBadRelayAddress(t *testing.T) {
	for _, addr := range []string{
		"",
		"nohostport",
		"127.0.0.1:46051/",
		"127.0.0.1:",
		":8080",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"127.0.0.1:http",
		"127.0.0.1:-1",
		"ho st:80",
		"http:/127.0.0.1:80",
		"://127.0.0.1:80",
		"ftp://127.0.0.1:21",
		"http://",
		"http://127.0.0.1:",
		"http://127.0.0.1:99999",
		"http://127.0.0.1:8080/v1",
		"http://127.0.0.1:8080?q=1",
		"http://127.0.0.1:8080#frag",
		"http://user@127.0.0.1:8080",
		"https://:8443",
	} {
		t.Run(addr, func(t *testing.T) {
			_, err := endpoints.DialTCP("tcp", "svc", addr, "")
			if !errors.Is(err, endpoints.ErrBadRelayAddress) || !strings.Contains(err.Error(), `"`+addr+`"`) {
				t.Errorf("dial via %q: %v, want ErrBadRelayAddress naming the input", addr, err)
			}
			_, err = endpoints.ListenRelay("tcp", "svc", addr)
			if !errors.Is(err, endpoints.ErrBadRelayAddress) || !strings.Contains(err.Error(), `"`+addr+`"`) {
				t.Errorf("listen on %q: %v, want ErrBadRelayAddress naming the input", addr, err)
			}
		})
	}
}

// TestNotRelay points a dialer and a listener at an HTTP server that is
// not a relay: its 404 is ErrNotRelay, not a *RelayError that a listener
// would take for a permanent refusal of its name.
func TestNotRelay(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	var re *endpoints.RelayError
	_, err := endpoints.DialTCP("tcp", "svc", srv.Listener.Addr().String(), "")
	if !errors.Is(err, endpoints.ErrNotRelay) || errors.As(err, &re) {
		t.Errorf("dial: %v, want ErrNotRelay", err)
	}
	want := `endpoints: listen "svc": not a relay (no Relay-Node header in the answer): answered "404 Not Found": "404 page not found"`
	_, err = endpoints.ListenRelay("tcp", "svc", srv.URL)
	if !errors.Is(err, endpoints.ErrNotRelay) || errors.As(err, &re) || err.Error() != want {
		t.Errorf("listen: %v\nwant %s", err, want)
	}
	// A 200 from a server that is not a relay is no registration either.
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	if _, err := endpoints.ListenRelay("tcp", "svc", ok.URL); !errors.Is(err, endpoints.ErrNotRelay) {
		t.Errorf("listen on a 200 server: %v, want ErrNotRelay", err)
	}
}

// TestErrorText pins the exact text of the errors: the package prefix
// appears once.
func TestErrorText(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		err  func() error
		want string
	}{
		{func() error { _, err := endpoints.DialTCP("udp", "x", addr, ""); return err },
			`endpoints: dial "x": unsupported network "udp"`},
		{func() error { _, err := endpoints.ListenRelay("unix", "x", addr); return err },
			`endpoints: listen "x": unsupported network "unix"`},
		{func() error { _, err := endpoints.DialTCP("tcp", "x", "127.0.0.1:46051/", ""); return err },
			`endpoints: dial "x": bad relay address "127.0.0.1:46051/": port "46051/", want 1-65535`},
		{func() error { _, err := endpoints.ListenRelay("tcp", "x", "ftp://h:1"); return err },
			`endpoints: listen "x": bad relay address "ftp://h:1": scheme "ftp", want http or https`},
		{func() error { _, err := endpoints.DialMTLS("tcp", "x", nil, addr, ""); return err },
			`endpoints: dial mtls "x": nil tls.Config`},
		{func() error { _, err := endpoints.ListenMTLS("tcp", "x", &tls.Config{}, addr); return err },
			`endpoints: listen mtls "x": tls.Config has no certificate (set Certificates or GetCertificate)`},
	} {
		if err := tc.err(); err == nil || err.Error() != tc.want {
			t.Errorf("got  %v\nwant %s", err, tc.want)
		}
	}
}

// TestMTLSConfigErrors checks that a listener's config error names what
// is missing: the certificate, or the CAs to verify clients with.
func TestMTLSConfigErrors(t *testing.T) {
	pki := sharedPKI(t)
	cert := []tls.Certificate{pki.server}
	for _, tc := range []struct {
		name     string
		cfg      *tls.Config
		want     error
		wantText string
	}{
		{"no-certificate", &tls.Config{ClientCAs: pki.ca.Pool}, endpoints.ErrNoCertificate, "has no certificate"},
		{"no-client-cas", &tls.Config{Certificates: cert}, endpoints.ErrNoClientCAs, "mutual TLS needs ClientCAs"},
	} {
		// The relay address is never dialed: the config is checked first.
		_, err := endpoints.ListenMTLS("tcp", "x", tc.cfg, "127.0.0.1:1")
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		other := endpoints.ErrNoClientCAs
		if tc.want == endpoints.ErrNoClientCAs {
			other = endpoints.ErrNoCertificate
		}
		if errors.Is(err, other) {
			t.Errorf("%s: %v also matches %v", tc.name, err, other)
		}
	}
}

// TestDialRelayForms checks the relay's address forms a dialer connects
// by: an IP address with each network that can reach it, a URL, a name
// (looked up), and an IPv4 address with tcp6, which cannot reach it and
// fails at the connect, before any request.
func TestDialRelayForms(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	ln, err := endpoints.ListenRelay("tcp", serverName, r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveEcho(t, ln)
	_, port, _ := net.SplitHostPort(r.Addr)
	for _, c := range []struct{ network, relay string }{
		{"tcp", r.Addr},
		{"tcp4", r.Addr},
		{"tcp", "http://" + r.Addr},
		{"tcp", "localhost:" + port},
	} {
		conn, err := endpoints.NewRelayDialer(c.relay, clientName).Dial(c.network, serverName)
		if err != nil {
			t.Fatalf("%s via %s: %v", c.network, c.relay, err)
		}
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := conn.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2)
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "hi" {
			t.Fatalf("%s via %s: echo %q, %v", c.network, c.relay, got, err)
		}
		conn.Close()
	}
	_, err = endpoints.NewRelayDialer(r.Addr, clientName).Dial("tcp6", serverName)
	var re *endpoints.RelayError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("tcp6 to an IPv4 relay: %v, want a connect error", err)
	}
}

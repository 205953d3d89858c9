package endpoints_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestRelayTLSVerify checks that the endpoints verify an https:// relay:
// a certificate from a CA they do not trust, or that does not cover the
// relay's host, fails Listen and Dial with an x509 verification error
// before any request is sent.
func TestRelayTLSVerify(t *testing.T) {
	r := relaytest.StartTLS(t, relaynode.Config{})
	other := relaytest.NewCA(t, "another CA")
	_, port, _ := net.SplitHostPort(r.Addr)
	cases := []struct {
		name  string
		url   string
		opts  []endpoints.Option
		check func(error) bool
	}{
		{"untrusted-ca", r.URL, []endpoints.Option{endpoints.WithRelayTLS(&tls.Config{RootCAs: other.Pool})}, isUnknownAuthority},
		{"system-roots", r.URL, nil, func(err error) bool {
			var se x509.SystemRootsError // a machine with no root store
			return isUnknownAuthority(err) || errors.As(err, &se)
		}},
		// The certificate covers 127.0.0.1 only; ServerName defaults to
		// the URL's host.
		{"wrong-host", "https://localhost:" + port, []endpoints.Option{endpoints.WithRelayTLS(&tls.Config{RootCAs: r.RootCAs})}, isHostnameError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := endpoints.ListenRelay("tcp", serverName, tc.url, tc.opts...)
			if ln != nil {
				ln.Close()
			}
			if !tc.check(err) {
				t.Errorf("listen: %v, want a certificate verification error of the right kind", err)
			}
			c, err := endpoints.DialTCP("tcp", serverName, tc.url, clientName, tc.opts...)
			if c != nil {
				c.Close()
			}
			if !tc.check(err) {
				t.Errorf("dial: %v, want a certificate verification error of the right kind", err)
			}
		})
	}
	// The relay saw no request: nothing got past the handshake.
	k := r.Node.Stats().Actors.Kinds
	if k[actors.KindListener].Processed+k[actors.KindPending].Processed != 0 {
		t.Errorf("the relay's listener and pending actors processed messages: %+v", k)
	}

	t.Run("server-name-override", func(t *testing.T) {
		opts := []endpoints.Option{endpoints.WithRelayTLS(&tls.Config{RootCAs: r.RootCAs, ServerName: "127.0.0.1"})}
		ln, err := endpoints.ListenRelay("tcp", serverName, "https://localhost:"+port, opts...)
		if err != nil {
			t.Fatalf("listen with ServerName set: %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		serveEcho(t, ln)
		echoOnce(t, endpoints.NewRelayDialer("https://localhost:"+port, clientName, opts...), "via localhost")
	})
}

func isUnknownAuthority(err error) bool {
	var ve *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	return errors.As(err, &ve) && errors.As(err, &ue)
}

func isHostnameError(err error) bool {
	var ve *tls.CertificateVerificationError
	var he x509.HostnameError
	return errors.As(err, &ve) && errors.As(err, &he)
}

// TestRelayTLSMismatch checks the two ways to get the scheme wrong: plain
// HTTP to a TLS relay is answered 400 by its TLS server, and TLS to a
// plain relay fails the handshake.
func TestRelayTLSMismatch(t *testing.T) {
	t.Run("http-to-tls-relay", func(t *testing.T) {
		r := relaytest.StartTLS(t, relaynode.Config{})
		_, err := endpoints.DialTCP("tcp", serverName, "http://"+r.Addr, clientName)
		// The 400 is net/http's, before the relay's handler: no Relay-Node.
		if !errors.Is(err, endpoints.ErrNotRelay) || !strings.Contains(err.Error(), "HTTPS server") {
			t.Errorf("dial a TLS relay over http: %v, want ErrNotRelay naming the HTTPS server", err)
		}
	})
	t.Run("https-to-plain-relay", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		ln, err := endpoints.ListenRelay("tcp", serverName, "https://"+r.Addr)
		if ln != nil {
			ln.Close()
		}
		var rh tls.RecordHeaderError
		if !errors.As(err, &rh) {
			t.Errorf("listen on a plain relay over https: %v, want a tls.RecordHeaderError", err)
		}
	})
}

// TestRelayTLSALPN checks that the TLS relay speaks HTTP/1.1 only, since an
// HTTP/2 request cannot be hijacked: a client offering h2 first gets
// http/1.1, and one offering only h2 is refused.
func TestRelayTLSALPN(t *testing.T) {
	r := relaytest.StartTLS(t, relaynode.Config{})
	dial := func(protos ...string) (string, error) {
		c, err := tls.Dial("tcp", r.Addr, &tls.Config{RootCAs: r.RootCAs, NextProtos: protos})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().NegotiatedProtocol, nil
	}
	if p, err := dial("h2", "http/1.1"); err != nil || p != "http/1.1" {
		t.Errorf("offering h2 and http/1.1: negotiated %q, %v; want http/1.1", p, err)
	}
	if p, err := dial("h2"); err == nil {
		t.Errorf("offering h2 only: negotiated %q, want a refused handshake", p)
	}
}

// TestRelayTLSFromFiles runs a relay whose certificate and key come from PEM
// files (Config.TLSCertFile and TLSKeyFile, the binary's -tls-cert and
// -tls-key), with the key in PKCS #8 and in SEC 1 form, and relays an echo
// over https through it, plain and MTLS.
func TestRelayTLSFromFiles(t *testing.T) {
	ca := relaytest.NewCA(t, "relay files CA")
	for _, keyForm := range []string{"PRIVATE KEY", "EC PRIVATE KEY"} {
		t.Run(strings.ReplaceAll(keyForm, " ", "-"), func(t *testing.T) {
			certFile, keyFile := writeKeyPair(t, ca.Issue(t, "relay", "127.0.0.1"), keyForm)
			node, err := relaynode.New(relaynode.Config{
				TLSCertFile: certFile,
				TLSKeyFile:  keyFile,
				Logger:      relaytest.Logger(t, slog.LevelWarn),
			})
			if err != nil {
				t.Fatalf("relaynode.New: %v", err)
			}
			lnTCP, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				node.Close()
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- node.Serve(lnTCP) }()
			t.Cleanup(func() {
				node.Close()
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve: %v, want http.ErrServerClosed", err)
				}
			})
			relay := "https://" + lnTCP.Addr().String()
			opt := endpoints.WithRelayTLS(&tls.Config{RootCAs: ca.Pool})

			ln, err := endpoints.ListenRelay("tcp", serverName, relay, opt)
			if err != nil {
				t.Fatalf("listen over https: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			serveEcho(t, ln)
			echoOnce(t, endpoints.NewRelayDialer(relay, clientName, opt), "over https")

			pki := sharedPKI(t)
			mln, err := endpoints.ListenMTLS("tcp", "secure", pki.serverConfig(), relay, opt)
			if err != nil {
				t.Fatalf("listen mtls over https: %v", err)
			}
			t.Cleanup(func() { mln.Close() })
			serveEcho(t, mln)
			cfg := pki.clientConfig()
			cfg.ServerName = serverName // the certificate's name
			d := endpoints.NewRelayMTLSDialer(relay, clientName, opt)
			echoOnce(t, namedDialer{mtlsDialer{d, cfg}, "secure"}, "mtls over https")
		})
	}

	t.Run("bad-files", func(t *testing.T) {
		certFile, keyFile := writeKeyPair(t, ca.Issue(t, "relay", "127.0.0.1"), "PRIVATE KEY")
		for _, cfg := range []relaynode.Config{
			{TLSCertFile: certFile},
			{TLSKeyFile: keyFile},
			{TLSCertFile: certFile, TLSKeyFile: filepath.Join(t.TempDir(), "missing.pem")},
			{TLSCertFile: keyFile, TLSKeyFile: certFile},
		} {
			if n, err := relaynode.New(cfg); err == nil {
				n.Close()
				t.Errorf("relaynode.New(%+v) succeeded", cfg)
			}
		}
	})
}

// namedDialer dials name whatever address it is given: echoOnce dials
// serverName.
type namedDialer struct {
	contextDialer
	name string
}

func (n namedDialer) Dial(network, _ string) (net.Conn, error) {
	return n.contextDialer.Dial(network, n.name)
}

// writeKeyPair writes cert's chain and key as PEM files in a temp dir, the
// key as a PKCS #8 "PRIVATE KEY" or a SEC 1 "EC PRIVATE KEY" block, and
// returns their paths.
func writeKeyPair(t testing.TB, cert tls.Certificate, keyForm string) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	var (
		der []byte
		err error
	)
	switch keyForm {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: keyForm, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRelayMutualTLS runs a relay that requires client certificates
// (Config.TLSConfig with ClientCAs and RequireAndVerifyClientCert). An
// endpoint without one is refused at the handshake. A registration needs
// a certificate whose DNS SANs cover the name (403 otherwise); with one,
// given through WithRelayTLS's Certificates, the name is served and
// dialed.
func TestRelayMutualTLS(t *testing.T) {
	ca := relaytest.NewCA(t, "relay access CA")
	r := relaytest.Start(t, relaynode.Config{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "relay", "127.0.0.1")},
		ClientCAs:    ca.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}})
	relay := "https://" + r.Addr
	withCert := func(cert ...tls.Certificate) endpoints.Option {
		return endpoints.WithRelayTLS(&tls.Config{RootCAs: ca.Pool, Certificates: cert})
	}
	owner := withCert(ca.Issue(t, "owner", serverName))
	other := withCert(ca.Issue(t, "other", "other-*"))
	stranger := withCert()

	if ln, err := endpoints.ListenRelay("tcp", serverName, relay, stranger); err == nil {
		ln.Close()
		t.Error("listen without a client certificate succeeded")
	}
	if c, err := endpoints.DialTCP("tcp", serverName, relay, clientName, stranger); err == nil {
		c.Close()
		t.Error("dial without a client certificate succeeded")
	}
	ln, err := endpoints.ListenRelay("tcp", serverName, relay, other)
	var re *endpoints.RelayError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden {
		t.Errorf("listen with a certificate for other-*: %v, want *RelayError 403", err)
	}
	if ln != nil {
		ln.Close()
	}
	ln, err = endpoints.ListenRelay("tcp", serverName, relay, owner)
	if err != nil {
		t.Fatalf("listen with a certificate covering the name: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	serveEcho(t, ln)
	echoOnce(t, endpoints.NewRelayDialer(relay, clientName, other), "with a client certificate")
}

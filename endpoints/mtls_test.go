package endpoints_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// mtlsTransport is MTLS end to end over a plain relay.
var mtlsTransport = transport{name: "mtls", mtls: true}

// markerPayload returns size bytes made of a marker and a counter, over and
// over: "PLAINTEXT-MARKER-<dir>-00000000|PLAINTEXT-MARKER-<dir>-00000001|…".
func markerPayload(dir string, size int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s-%s-%08d|", plaintextMarker, dir, i)
	}
	return b.Bytes()[:size]
}

const plaintextMarker = "PLAINTEXT-MARKER"

// TestRelayNeverSeesPlaintext is M1: a recording proxy sits between each
// endpoint and the relay (the dialer's connection, the listener's stream
// and its callbacks all go through it) while a session sends 64 KiB of
// marked plaintext each way. Both applications get their bytes exactly.
// Over MTLS the marker appears in no recorded byte, although the
// recordings hold at least the payload's length each way; over plain TCP,
// the control, it appears in every direction, which proves the recorder
// sees what the relay copies. With TLS to the relay the on-path observer
// sees no routing metadata either (no route, no name, no client name).
func TestRelayNeverSeesPlaintext(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			markerVisible := !tr.usesTLS()
			metadataVisible := !tr.tlsRelay
			testRelayNeverSeesPlaintext(t, tr, markerVisible, metadataVisible)
		})
	}
}

func testRelayNeverSeesPlaintext(t *testing.T, tr transport, markerVisible, metadataVisible bool) {
	const size = 64 << 10
	up, down := markerPayload("UP", size), markerPayload("DOWN", size)
	r := tr.start(t, relaynode.Config{})
	rec := startRecorder(t, r.Addr, 8<<20)
	v := via(r, rec.addr)
	ln, err := tr.listen(t, v, serverName)
	if err != nil {
		t.Fatalf("listen through the recorder: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	d := tr.dialer(t, v, clientName)

	srvErr := make(chan error, 1)
	serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		got, err := io.ReadAll(c)
		if err == nil && !bytes.Equal(got, up) {
			err = fmt.Errorf("got %d bytes, want the %d sent (first diff at %d)", len(got), len(up), firstDiff(got, up))
		}
		if err == nil {
			_, err = c.Write(down)
		}
		if err == nil {
			err = c.(closeWriter).CloseWrite()
		}
		srvErr <- err
	})
	c, err := d.Dial("tcp", serverName)
	if err != nil {
		t.Fatalf("dial through the recorder: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(up); err != nil {
		t.Fatalf("client write: %v", err)
	}
	if err := c.(closeWriter).CloseWrite(); err != nil {
		t.Fatalf("client CloseWrite: %v", err)
	}
	readExactlyThenEOF(t, "client", c, down)
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}

	// Recorded: the listen stream, the dial and the callback, each way.
	recs := rec.recorded()
	if len(recs) < 6 {
		t.Fatalf("recorded %d directions, want at least 6 (stream, dial, callback × 2)", len(recs))
	}
	big, withMarker := 0, 0
	for _, rc := range recs {
		b := rc.buf.Bytes()
		if rc.overflow {
			t.Errorf("%v: more than the recorder's limit", &rc)
		}
		if len(b) == 0 {
			t.Errorf("%v: nothing recorded", &rc)
		}
		if len(b) >= size {
			big++
		}
		if bytes.Contains(b, []byte(plaintextMarker)) {
			withMarker++
			if !markerVisible {
				i := bytes.Index(b, []byte(plaintextMarker))
				t.Errorf("%v: the plaintext marker is on the wire at offset %d of %d", &rc, i, len(b))
			}
		}
	}
	// Each payload crosses two sockets: endpoint→relay and relay→endpoint.
	if big < 4 {
		t.Errorf("%d recorded directions hold at least %d bytes, want 4 (payload up and down, on both sides)", big, size)
	}
	if markerVisible && withMarker < 4 {
		t.Errorf("control: the marker is in %d recorded directions, want at least 4; the recorder misses bytes", withMarker)
	}

	// Routing metadata: the dial route with the server's name, and the
	// client's name, as the relay and an on-path observer see them.
	var toRelay bytes.Buffer
	for _, rc := range recs {
		if rc.toRelay {
			toRelay.Write(rc.buf.Bytes())
		}
	}
	for _, meta := range []string{wire.PathDial + serverName, wire.PathListen + serverName, clientName} {
		if seen := bytes.Contains(toRelay.Bytes(), []byte(meta)); seen != metadataVisible {
			t.Errorf("%q on the wire to the relay: %v, want %v", meta, seen, metadataVisible)
		}
	}

	// The relay copied the session: with MTLS, the payload in TLS
	// records. A pair counts its bytes when it ends; over MTLS, CloseWrite
	// is a close_notify record, not a FIN, so the pair ends with Close.
	c.Close()
	relaytest.Eventually(t, ioTimeout, func() bool {
		st := r.Node.Stats().Actors
		return st.BytesToClient >= size && st.BytesToServer >= size
	}, fmt.Sprintf("the relay counted fewer bytes than the payload each way: %d to the server, %d to the client",
		r.Node.Stats().Actors.BytesToServer, r.Node.Stats().Actors.BytesToClient))
}

// TestMTLSBadClientCert checks that a client with a certificate from
// another CA, or with none, fails the handshake, that the listener counts
// each failure, and that Accept goes on serving good clients. Over TLS 1.2
// DialMTLS itself fails. Over TLS 1.3 the client's handshake ends before
// the server has checked its certificate, so the refusal (a TLS alert)
// comes with the first Read; DialMTLS may return a conn first.
func TestMTLSBadClientCert(t *testing.T) {
	pki := sharedPKI(t)
	other := relaytest.NewCA(t, "another CA")
	bad := map[string]*tls.Config{
		"other-ca": {Certificates: []tls.Certificate{other.Issue(t, clientName)}, RootCAs: pki.ca.Pool},
		"no-cert":  {RootCAs: pki.ca.Pool},
		"self-as-ca": {
			// A leaf of the right CA's name but signed by another key.
			Certificates: []tls.Certificate{relaytest.NewCA(t, "endpoints test CA").Issue(t, clientName)},
			RootCAs:      pki.ca.Pool,
		},
	}
	r, ln, d := newPair(t, mtlsTransport)
	srv := serveEcho(t, ln)
	failed := ln.(failedCounter)
	want := int64(0)
	for name, cfg := range bad {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("%s/%s", name, tls.VersionName(version)), func(t *testing.T) {
				cfg := cfg.Clone()
				cfg.MaxVersion = version
				c, err := endpoints.DialMTLS("tcp", serverName, cfg, r.Addr, "bad-client")
				if err == nil {
					if version == tls.VersionTLS12 {
						t.Errorf("TLS 1.2: DialMTLS with a bad client certificate succeeded")
					}
					_ = c.SetDeadline(time.Now().Add(ioTimeout))
					_, err = c.Read(make([]byte, 1))
					c.Close()
					if err == nil {
						t.Fatal("read after a handshake with a bad client certificate succeeded")
					}
				}
				var oe *net.OpError
				if !errors.As(err, &oe) || oe.Op != "remote error" || !strings.Contains(err.Error(), "tls:") {
					t.Errorf("bad client certificate: %v, want the server's TLS alert (remote error: tls: …)", err)
				}
				want++
				relaytest.Eventually(t, ioTimeout, func() bool { return failed.Failed() >= want },
					fmt.Sprintf("listener Failed() = %d, want %d", failed.Failed(), want))
				echoOnce(t, d, "a good client after a bad one")
			})
		}
	}
	if got := failed.Failed(); got != want {
		t.Errorf("listener Failed() = %d, want %d", got, want)
	}
	if got := srv.Accepted(); got != int64(len(bad)*2) {
		t.Errorf("Accept returned %d conns, want %d (the good clients only)", got, len(bad)*2)
	}
}

// TestMTLSBadServerCert checks that the dialer verifies the server: a
// certificate whose SAN does not cover the dialed name, or from an unknown
// CA, fails DialMTLS with an x509 verification error, the listener counts
// the failed handshake and keeps serving. A dial whose ServerName names
// the certificate's SAN works: ServerName defaults to the server's name
// but can be set.
func TestMTLSBadServerCert(t *testing.T) {
	pki := sharedPKI(t)
	other := relaytest.NewCA(t, "another CA")
	cases := []struct {
		name   string
		cert   tls.Certificate
		goodSN string // a ServerName that verifies
		check  func(error) bool
	}{
		{"wrong-san", pki.ca.Issue(t, "not-echo", "not-echo"), "not-echo", func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{"unknown-ca", other.Issue(t, serverName, serverName), "", func(err error) bool {
			var ue x509.UnknownAuthorityError
			return errors.As(err, &ue)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := relaytest.Start(t, relaynode.Config{})
			ln, err := endpoints.ListenMTLS("tcp", serverName,
				&tls.Config{Certificates: []tls.Certificate{tc.cert}, ClientCAs: pki.ca.Pool}, r.URL)
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			srv := serveEcho(t, ln)
			d := endpoints.NewRelayMTLSDialer(r.Addr, clientName)

			c, err := d.Dial("tcp", serverName, pki.clientConfig())
			if err == nil {
				c.Close()
				t.Fatal("DialMTLS to a server with a bad certificate succeeded")
			}
			var ve *tls.CertificateVerificationError
			if !errors.As(err, &ve) || !tc.check(err) {
				t.Errorf("DialMTLS: %v (%T), want a *tls.CertificateVerificationError of the right kind", err, errors.Unwrap(err))
			}
			relaytest.Eventually(t, ioTimeout, func() bool { return ln.(failedCounter).Failed() == 1 },
				"the listener did not count the failed handshake")

			if tc.goodSN == "" {
				// The trusting client: the other CA in RootCAs.
				cfg := pki.clientConfig()
				cfg.RootCAs = other.Pool
				echoOnceMTLS(t, d, cfg, "after a bad dial")
			} else {
				cfg := pki.clientConfig()
				cfg.ServerName = tc.goodSN
				echoOnceMTLS(t, d, cfg, "after a bad dial")
			}
			if got := srv.Accepted(); got != 1 {
				t.Errorf("Accept returned %d conns, want 1", got)
			}
		})
	}
}

// echoOnceMTLS is echoOnce through an MTLS dialer with cfg.
func echoOnceMTLS(t testing.TB, d *endpoints.RelayMTLSDialer, cfg *tls.Config, msg string) {
	t.Helper()
	echoOnce(t, mtlsDialer{d, cfg}, msg)
}

// TestMTLSConfig checks the configs ListenMTLS and DialMTLS take: nil and
// certificate-less configs are refused before anything is registered; a
// config with ClientCAs and no ClientAuth is made mutual
// (RequireAndVerifyClientCert), so the accepted conn holds the client's
// verified chain; an explicit ClientAuth is kept.
func TestMTLSConfig(t *testing.T) {
	pki := sharedPKI(t)
	r := relaytest.Start(t, relaynode.Config{})

	t.Run("refused", func(t *testing.T) {
		const name = "refused"
		cert := []tls.Certificate{pki.server}
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
			want error
		}{
			{"nil", nil, endpoints.ErrNoTLSConfig},
			{"no-certificate", &tls.Config{ClientCAs: pki.ca.Pool}, endpoints.ErrNoCertificate},
			{"mutual-without-client-cas", &tls.Config{Certificates: cert}, endpoints.ErrNoClientCAs},
		} {
			ln, err := endpoints.ListenMTLS("tcp", name, tc.cfg, r.URL)
			if ln != nil {
				ln.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: ListenMTLS: %v, want %v", tc.name, err, tc.want)
			}
		}
		c, err := endpoints.DialMTLS("tcp", name, nil, r.Addr, clientName)
		if c != nil {
			c.Close()
		}
		if !errors.Is(err, endpoints.ErrNoTLSConfig) {
			t.Errorf("DialMTLS with a nil config: %v, want ErrNoTLSConfig", err)
		}
		// Nothing was registered: the name is free.
		ln, err := endpoints.ListenRelay("tcp", name, r.URL)
		if err != nil {
			t.Fatalf("listen after the refused ListenMTLS: %v", err)
		}
		ln.Close()
	})

	t.Run("mutual-by-default", func(t *testing.T) {
		cfg := pki.serverConfig()
		if cfg.ClientAuth != tls.NoClientCert {
			t.Fatal("serverConfig sets ClientAuth")
		}
		ln, err := endpoints.ListenMTLS("tcp", serverName, cfg, r.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if cfg.ClientAuth != tls.NoClientCert {
			t.Error("ListenMTLS changed the caller's config")
		}
		c, err := endpoints.DialMTLS("tcp", serverName, pki.clientConfig(), r.Addr, clientName)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		sc := acceptOne(t, ln)
		tc, ok := sc.(*tls.Conn)
		if !ok {
			t.Fatalf("accepted %T, want *tls.Conn", sc)
		}
		st := tc.ConnectionState()
		if !st.HandshakeComplete {
			t.Error("accepted conn's handshake is not complete")
		}
		if len(st.VerifiedChains) == 0 || !st.VerifiedChains[0][0].Equal(pki.client.Leaf) {
			t.Errorf("accepted conn's VerifiedChains %v, want a chain from the client's leaf", st.VerifiedChains)
		}
		if got := st.PeerCertificates[0].Subject.CommonName; got != clientName {
			t.Errorf("client certificate CN %q, want %q", got, clientName)
		}
		if got := relayed(t, sc).ClientName(); got != clientName {
			t.Errorf("ClientName %q, want %q", got, clientName)
		}
		dst := c.(*tls.Conn).ConnectionState()
		if dst.ServerName != serverName || !dst.PeerCertificates[0].Equal(pki.server.Leaf) {
			t.Errorf("dialed conn: ServerName %q, peer %v; want %q and the server's leaf", dst.ServerName, dst.PeerCertificates[0].Subject, serverName)
		}
	})

	t.Run("explicit-client-auth", func(t *testing.T) {
		// One-way TLS: the server asks for no certificate it must verify.
		cfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequestClientCert}
		ln, err := endpoints.ListenMTLS("tcp", "one-way", cfg, r.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		// The server's certificate covers serverName, not "one-way".
		ccfg := &tls.Config{RootCAs: pki.ca.Pool, ServerName: serverName}
		c, err := endpoints.DialMTLS("tcp", "one-way", ccfg, r.Addr, clientName)
		if err != nil {
			t.Fatalf("dial without a client certificate: %v", err)
		}
		defer c.Close()
		sc := acceptOne(t, ln)
		if st := sc.(*tls.Conn).ConnectionState(); len(st.PeerCertificates) != 0 || len(st.VerifiedChains) != 0 {
			t.Errorf("one-way TLS: peer certificates %d, verified chains %d; want none", len(st.PeerCertificates), len(st.VerifiedChains))
		}
	})
}

// TestMTLSSlowClient checks that a client that opens a relayed conn but
// never starts its handshake blocks neither Accept nor other handshakes,
// and is cut and counted at the handshake timeout.
func TestMTLSSlowClient(t *testing.T) {
	// silent opens a relayed conn to serverName, as a client, and sends
	// nothing on it.
	silent := func(t *testing.T, r *relaytest.Relay) net.Conn {
		t.Helper()
		c, err := endpoints.DialTCP("tcp", serverName, r.Addr, "silent")
		if err != nil {
			t.Fatalf("silent dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("does-not-block-accept", func(t *testing.T) {
		// The handshake timeout is far longer than the test: the good
		// client can only get through while the silent one still stalls.
		r, ln, d := newPairWith(t, mtlsTransport, pairConfig{
			listenOpts: []endpoints.Option{endpoints.WithHandshakeTimeout(5 * time.Minute)},
		})
		srv := serveEcho(t, ln)
		sc := silent(t, r)
		echoOnce(t, d, "while another client stalls")
		if got := ln.(failedCounter).Failed(); got != 0 {
			t.Errorf("Failed() = %d while the silent client stalls, want 0", got)
		}
		if got := srv.Accepted(); got != 1 {
			t.Errorf("Accept returned %d conns, want 1", got)
		}
		// Giving up ends the stalled handshake, which counts as failed.
		sc.Close()
		relaytest.Eventually(t, ioTimeout, func() bool { return ln.(failedCounter).Failed() == 1 },
			"the abandoned handshake was not counted")
	})

	t.Run("cut-at-handshake-timeout", func(t *testing.T) {
		const timeout = 500 * time.Millisecond
		r, ln, d := newPairWith(t, mtlsTransport, pairConfig{
			listenOpts: []endpoints.Option{endpoints.WithHandshakeTimeout(timeout)},
		})
		srv := serveEcho(t, ln)
		sc := silent(t, r)
		start := time.Now()
		relaytest.Eventually(t, ioTimeout, func() bool { return ln.(failedCounter).Failed() == 1 },
			"the silent client was not counted as a failed handshake")
		// The listener closed the conn: the silent client reads its end.
		_ = sc.SetReadDeadline(time.Now().Add(ioTimeout))
		if n, err := sc.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, net.ErrClosed) {
			t.Errorf("silent client after the handshake timeout: read %d, %v; want the end of the conn", n, err)
		}
		t.Logf("silent client cut after %v (handshake timeout %v)", time.Since(start).Round(time.Millisecond), timeout)
		echoOnce(t, d, "after a silent client")
		if got := srv.Accepted(); got != 1 {
			t.Errorf("Accept returned %d conns, want 1", got)
		}
	})
}

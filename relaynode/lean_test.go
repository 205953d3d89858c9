package relaynode_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// relayBytesBehind dials name on addr with dialReq followed at once by
// bytes of its own, calls back with bytes behind the callback, and checks
// that each side reads the other's bytes after its 101.
func relayBytesBehind(t *testing.T, addr, name, dialReq string) {
	t.Helper()
	s, a := relaytest.Listen(nil, addr, name, 5*time.Second)
	if s == nil {
		t.Fatalf("listen: %v", a)
	}
	defer s.Close()
	client, err := relaytest.DialRaw(nil, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Send(dialReq + "early"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.NextConnect(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv, a := relaytest.Upgrade(addr, relaytest.AcceptRequest(ev.Callback, s.Registration)+"back", 5*time.Second)
	if srv == nil {
		t.Fatalf("callback: %v", a)
	}
	defer srv.Close()
	if a := client.Answer(5 * time.Second); a.Status != http.StatusSwitchingProtocols {
		t.Fatalf("dial: %v, want 101", a)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(srv.R, got); err != nil || string(got) != "early" {
		t.Fatalf("server read %q, %v; want %q", got, err, "early")
	}
	got = got[:4]
	if _, err := io.ReadFull(client.R, got); err != nil || string(got) != "back" {
		t.Fatalf("client read %q, %v; want %q", got, err, "back")
	}
}

// TestLeanBytesBehindRequest checks that bytes a client sends right
// behind its request reach the other side, on the lean path (a plain
// dial) and on net/http's (a head the lean path leaves to it: a header
// value with a byte above ASCII, which net/http accepts).
func TestLeanBytesBehindRequest(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	relayBytesBehind(t, r.Addr, "lean", relaytest.DialRequest("lean", "c1"))
	relayBytesBehind(t, r.Addr, "handed", relaytest.Request("POST", wire.PathDial+"handed", relaytest.UpgradeHeaders, "X-Odd: caf\xe9"))
	if st := r.Node.Stats(); st.Spliced != 2 {
		t.Fatalf("spliced %d pairs, want 2", st.Spliced)
	}
}

// TestMountedHandler checks that a Node served by an http.Server of its
// embedder (no lean path) relays as before.
func TestMountedHandler(t *testing.T) {
	node, err := relaynode.New(relaynode.Config{DialRate: -1, Logger: relaytest.Logger(t, slog.LevelError)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: node, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		node.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("serve: %v", err)
		}
	}()
	relayBytesBehind(t, ln.Addr().String(), "mounted", relaytest.DialRequest("mounted", ""))
}

// TestLeanAnswersAsNetHTTP sends the same raw requests, plain and odd, to
// a node on its own server (the lean path in front of net/http) and to a
// node mounted on a bare http.Server (net/http only), and checks that
// both give the same answer: the lean path takes only what it answers as
// net/http would, and hands the rest over.
func TestLeanAnswersAsNetHTTP(t *testing.T) {
	const rht = 500 * time.Millisecond
	cfg := relaynode.Config{ReadHeaderTimeout: rht}
	lean := relaytest.Start(t, cfg)
	mountedCfg := cfg
	mountedCfg.DialRate = -1
	mountedCfg.Logger = relaytest.Logger(t, slog.LevelError)
	node, err := relaynode.New(mountedCfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: node, ReadHeaderTimeout: rht, MaxHeaderBytes: 8192}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		node.Close()
		<-served
	}()
	up := relaytest.UpgradeHeaders
	tok := "2UJD1JX43xY_-TlwBYkUig"
	reg := wire.HeaderRegistration + ": R142lY6hkJ9ZQXzt7s6e-g"
	for _, c := range []struct{ name, raw string }{
		{"dial unknown", relaytest.DialRequest("nobody", "")},
		{"dial without upgrade", relaytest.Request("POST", wire.PathDial+"nobody")},
		{"dial bad client name", relaytest.Request("POST", wire.PathDial+"nobody", up, wire.HeaderClientName+": a/b")},
		{"dial bad name", relaytest.Request("POST", wire.PathDial+"-x", up)},
		{"accept bad token", relaytest.Request("POST", wire.PathAccept+"nope", up, reg)},
		{"accept without registration", relaytest.Request("POST", wire.PathAccept+tok, up)},
		{"accept unknown token", relaytest.Request("POST", wire.PathAccept+tok, up, reg)},
		{"park without registration", relaytest.Request("POST", wire.PathPark+"nobody", up)},
		{"park unknown registration", relaytest.Request("POST", wire.PathPark+"nobody", up, reg)},
		{"dial with a body", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n" + up + "\r\n\r\nhello"},
		{"dial chunked", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n" + up + "\r\n\r\n0\r\n\r\n"},
		{"dial expect", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nExpect: 100-continue\r\n" + up + "\r\n\r\n"},
		{"dial HTTP/1.0", "POST " + wire.PathDial + "nobody HTTP/1.0\r\nHost: relay\r\n" + up + "\r\n\r\n"},
		{"dial two hosts", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + up + "\r\n\r\n"},
		{"dial no host", "POST " + wire.PathDial + "nobody HTTP/1.1\r\n" + up + "\r\n\r\n"},
		{"dial lower-case method", "post " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\n" + up + "\r\n\r\n"},
		{"dial escaped path", "POST " + wire.PathDial + "nob%6Fdy HTTP/1.1\r\nHost: relay\r\n" + up + "\r\n\r\n"},
		{"dial query", "POST " + wire.PathDial + "nobody?x=1 HTTP/1.1\r\nHost: relay\r\n" + up + "\r\n\r\n"},
		{"dial absolute form", "POST http://relay" + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\n" + up + "\r\n\r\n"},
		{"dial bare LF", "POST " + wire.PathDial + "nobody HTTP/1.1\nHost: relay\nConnection: Upgrade\nUpgrade: " + wire.UpgradeProtocol + "\n\n"},
		{"dial bare LF headers", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\nConnection: Upgrade\nUpgrade: " + wire.UpgradeProtocol + "\n\n"},
		{"dial folded header", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nX-A: 1\r\n 2\r\n" + up + "\r\n\r\n"},
		{"dial header without colon", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nX-A\r\n" + up + "\r\n\r\n"},
		{"dial space before colon", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nX-A : 1\r\n" + up + "\r\n\r\n"},
		{"dial control byte", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: relay\r\nX-A: a\x01b\r\n" + up + "\r\n\r\n"},
		{"dial big header", relaytest.Request("POST", wire.PathDial+"nobody", up, "X-Big: "+strings.Repeat("b", 16<<10))},
		{"dial close", relaytest.Request("POST", wire.PathDial+"nobody", up, "Connection: close")},
		{"dial cut short", "POST " + wire.PathDial + "nobody HTTP/1.1\r\nHost: re"},
		{"listen bad name", relaytest.Request("POST", wire.PathListen+"-x")},
		{"GET dial", relaytest.Request("GET", wire.PathDial+"nobody", up)},
		{"not HTTP", "\x16\x03\x01\x00\x05hello"},
	} {
		a := relaytest.Do(lean.Addr, c.raw, 5*time.Second)
		b := relaytest.Do(ln.Addr().String(), c.raw, 5*time.Second)
		if a.Status != b.Status || a.Reason != b.Reason {
			t.Errorf("%s: lean path %d %q, net/http %d %q", c.name, a.Status, a.Reason, b.Status, b.Reason)
		}
		if a.Status >= 300 && (a.Header.Get(wire.HeaderNode) == "") != (b.Header.Get(wire.HeaderNode) == "") {
			t.Errorf("%s: Relay-Node on the lean path %q, on net/http's %q", c.name, a.Header.Get(wire.HeaderNode), b.Header.Get(wire.HeaderNode))
		}
	}
}

package relaynode_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
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

package relaynode

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLeanWorkersServeAgain checks that the lean path's goroutines serve
// one connection after another: 40 sequential connections, each a dial
// answered 404 and closed, are served by far fewer than 40 goroutines.
func TestLeanWorkersServeAgain(t *testing.T) {
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ln) }()
	const conns = 40
	for i := range conns {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.WriteString(c, "POST /v1/dial/nobody HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 404 ") {
			t.Fatalf("conn %d: %q, %v; want a 404 and the close", i, b, err)
		}
	}
	w := n.leanWorkers.Load()
	t.Logf("%d goroutines served %d sequential connections", w, conns)
	if w < 1 || w > conns/4 {
		t.Fatalf("%d goroutines served %d sequential connections, want 1 to %d", w, conns, conns/4)
	}
	n.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// Package relaytest runs relays on loopback for tests, as net/http/httptest
// runs HTTP servers: Start gives a live relaynode.Node on 127.0.0.1 with a
// random port, stopped by the test's cleanup. It also holds what the
// project's tests share, so that each is written once:
//
//   - the raw client, the protocol spoken by hand: Request and its
//     builders, Do, Upgrade, Listen and Stream, DialRaw and Conn;
//   - the accept loop of a test's server: Serve, ServeEcho, Echo;
//   - the echo probe, the load loop and the restart round: Ping, PollPing,
//     DialRetry, EchoLoad, Restarter, Flow;
//   - faults on the link: FaultProxy; certificates: CA;
//   - the checks: counting sockets, waiting for a condition with a bound.
//
// Every bound in it is a guard against hangs, never a timing to assert.
// Tests of any package may import it; the endpoints library itself never
// does, as it never imports relaynode.
package relaytest

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
)

// Relay is a relay serving on loopback.
type Relay struct {
	// Node is the relay.
	Node *relaynode.Node
	// Addr is its host:port.
	Addr string
	// URL is http://Addr, or https://Addr for StartTLS.
	URL string
	// RootCAs trusts the relay's certificate (StartTLS only).
	RootCAs *x509.CertPool

	served chan error
}

// Start starts a relay for cfg on 127.0.0.1:0. A nil cfg.Logger logs to
// t.Output() at warn. Every test client shares 127.0.0.1, so the per-IP
// limits a public relay needs would throttle the tests themselves: unless
// cfg sets them, Start turns the per-IP dial rate off (DialRate -1) and
// allows 100,000 registrations per IP. The relay is closed, and its Serve
// awaited, in the test's cleanup.
func Start(t testing.TB, cfg relaynode.Config) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relaytest: listen: %v", err)
	}
	return StartOn(t, cfg, ln)
}

// StartOn starts a relay for cfg, as Start does, serving ln: a listener
// the test made itself, with its own socket options. ln is closed with the
// relay.
func StartOn(t testing.TB, cfg relaynode.Config, ln net.Listener) *Relay {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(t, slog.LevelWarn)
	}
	if cfg.DialRate == 0 {
		cfg.DialRate = -1
	}
	if cfg.MaxRegistrationsPerIP == 0 {
		cfg.MaxRegistrationsPerIP = 100000
	}
	node, err := relaynode.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("relaytest: new node: %v", err)
	}
	r := &Relay{Node: node, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String(), served: make(chan error, 1)}
	go func() { r.served <- node.Serve(ln) }()
	t.Cleanup(r.Close)
	return r
}

// Close closes the relay and waits for its Serve to return. It is safe to
// call twice.
func (r *Relay) Close() {
	r.Node.Close()
	if r.served != nil {
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic("relaytest: serve: " + err.Error())
		}
		r.served = nil
	}
}

// Logger returns a logger that writes to t.Output() at level and above.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// Sockets returns the number of this process's open sockets: the entries of
// /proc/self/fd that link to "socket:[". Other fds (files, pipes, the
// runtime's epoll) do not count, so splice's pipes do not blur the figure.
func Sockets(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("relaytest: no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			n++
		}
	}
	return n
}

// Eventually polls cond every 10ms until it holds or timeout passes, when
// it fails the test with msg. It returns early when cond holds.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SocketsBack waits up to timeout for the socket count to fall to at most
// base, and fails the test with the count otherwise.
func SocketsBack(t testing.TB, base int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := Sockets(t)
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: after %v: %d sockets open, baseline %d", timeout, n, base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

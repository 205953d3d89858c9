package endpoints_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// The tests of absolute callbacks: a connect event whose callback is a
// URL, scheme://host:port/v1/accept/TOKEN, as a cluster node sends for a
// dial that came in at another node.

// crossNode is a front relay that plays a cluster node holding a
// listener's stream for a dial made at another node, back: it registers
// the listener's name at the real relay back by hand, gives the listener
// back's registration id, and passes back's connect events on with their
// callbacks made absolute, pointing at target (back, or another host). It
// answers any callback made to itself with 404 and counts it.
type crossNode struct {
	addr      string
	callbacks atomic.Int64 // callbacks that came to the front instead
}

// startCrossNode starts a plain front for back, calling back at back.
func startCrossNode(t *testing.T, back *relaytest.Relay) *crossNode {
	t.Helper()
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", back.Addr, ioTimeout) }
	return startCrossNodeWith(t, dial, nil, "http://"+back.Addr)
}

// startCrossNodeWith starts a front that reaches the back relay with dial,
// serves TLS with frontTLS when it is set, and makes callbacks absolute
// with the prefix target (scheme://host:port).
func startCrossNodeWith(t *testing.T, dial func() (net.Conn, error), frontTLS *tls.Config, target string) *crossNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cn := &crossNode{addr: ln.Addr().String()}
	if frontTLS != nil {
		ln = tls.NewListener(ln, frontTLS)
	}
	relaytest.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if !strings.HasPrefix(req.URL.Path, wire.PathListen) {
			cn.callbacks.Add(1)
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nRelay-Node: front\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		bc, err := dial()
		if err != nil {
			t.Errorf("front: connect to the back relay: %v", err)
			return
		}
		defer bc.Close()
		_ = bc.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := io.WriteString(bc, relaytest.ListenRequest(strings.TrimPrefix(req.URL.Path, wire.PathListen))); err != nil {
			t.Errorf("front: listen at the back relay: %v", err)
			return
		}
		a := relaytest.ReadAnswer(bufio.NewReader(bc))
		if a.Status != http.StatusOK {
			t.Errorf("front: listen at the back relay: %v", a)
			return
		}
		events := wire.NewReader(a.Body, 0, 0)
		ev, err := events.Next()
		if err != nil || ev.Type != wire.EventReady {
			t.Errorf("front: ready event from the back relay: %q, %v", ev.Type, err)
			return
		}
		ready, err := wire.ParseReady(ev.Data)
		if err != nil {
			t.Errorf("front: %v", err)
			return
		}
		_ = bc.SetDeadline(time.Time{})
		_ = c.SetDeadline(time.Time{})
		b, _ := wire.AppendJSONEvent([]byte(hostile200), wire.EventReady,
			wire.ReadyEvent{Node: "front", Registration: ready.Registration, HeartbeatMillis: 60000})
		if _, err := c.Write(b); err != nil {
			return
		}
		// The listener going ends the stream at the back relay too.
		go func() { silence(c); bc.Close() }()
		for range 1000 {
			ev, err := events.Next()
			if err != nil {
				return
			}
			if ev.Type != wire.EventConnect {
				continue
			}
			ce, err := wire.ParseConnect(ev.Data)
			if err != nil {
				t.Errorf("front: %v", err)
				return
			}
			ce.Callback = target + ce.Callback
			b, _ := wire.AppendJSONEvent(nil, wire.EventConnect, ce)
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	})
	return cn
}

// TestAbsoluteCallback checks that a listener calls back at the host of
// an absolute callback, not at the relay that sent the event, and that the
// bytes flow both ways through the pair made there; and that relative
// callbacks go on working on the same listener's kind (every other test).
func TestAbsoluteCallback(t *testing.T) {
	back := relaytest.Start(t, relaynode.Config{})
	front := startCrossNode(t, back)
	ln, err := endpoints.ListenRelay("tcp", serverName, "http://"+front.addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	d := endpoints.NewRelayDialer(back.Addr, clientName)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		if err := relaytest.Ping(ctx, d, serverName); err != nil {
			t.Errorf("dial %d at the back relay: %v", i, err)
		}
		cancel()
	}
	if got := srv.Accepted(); got != 3 {
		t.Errorf("accepted %d, want 3", got)
	}
	if got := front.callbacks.Load(); got != 0 {
		t.Errorf("%d callbacks went to the front relay, want 0", got)
	}
	if got := ln.(*endpoints.Listener).Failed(); got != 0 {
		t.Errorf("failed callbacks %d, want 0", got)
	}
}

// TestHostileCallbacks checks that connect events whose callbacks are not
// PathAccept+token, relative or absolute with the relay's scheme, are
// refused before anything is dialed and counted in Failed, and that a good
// absolute callback after them is dialed at its host and delivered.
func TestHostileCallbacks(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string // the requests the trap host got
	)
	good := wire.NewToken().String()
	trap := startHostile(t, func(c net.Conn, req *http.Request) {
		mu.Lock()
		seen = append(seen, req.Method+" "+req.URL.String()+" reg="+req.Header.Get(wire.HeaderRegistration)+" auth="+req.Header.Get("Authorization"))
		mu.Unlock()
		if req.URL.Path == wire.PathAccept+good {
			io.WriteString(c, hostile101+wire.HeaderClientName+": far\r\n\r\nhello")
			silence(c)
		}
	})
	regID := wire.NewToken().String()
	bad := func(tok string) []string {
		base := "http://" + trap.addr
		return []string{
			base + wire.PathAccept + wire.NewToken().String(), // another token
			base + wire.PathDial + tok,
			base + wire.PathListen + "victim",
			base + wire.PathAccept + tok + "?x=1",
			base + wire.PathAccept + tok + "?",
			base + wire.PathAccept + tok + "#f",
			base + wire.PathAccept + tok + "/",
			base + "/v1/accept/x/../" + tok,
			base + "/v1/accept/" + tok[:4] + "%2F" + tok[4:],
			"http://u:p@" + trap.addr + wire.PathAccept + tok,
			"https://" + trap.addr + wire.PathAccept + tok, // a scheme the relay is not
			"ftp://" + trap.addr + wire.PathAccept + tok,
			"//" + trap.addr + wire.PathAccept + tok,
			"http://127.0.0.1" + wire.PathAccept + tok,  // no port
			"http://127.0.0.1:" + wire.PathAccept + tok, // an empty one
			"http://127.0.0.1:0" + wire.PathAccept + tok,
			"http://127.0.0.1:65536" + wire.PathAccept + tok,
			"http://:" + strings.Split(trap.addr, ":")[1] + wire.PathAccept + tok, // no host
			"http://" + trap.addr + ":1" + wire.PathAccept + tok,
			"http:" + wire.PathAccept + tok,
			"http://" + trap.addr,
			wire.PathAccept + tok + "/../../listen/victim",
			"",
		}
	}
	var nbad int
	h := startHostile(t, func(c net.Conn, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, wire.PathListen) {
			return
		}
		b, _ := wire.AppendJSONEvent([]byte(hostile200), wire.EventReady,
			wire.ReadyEvent{Node: "hostile", Registration: regID, HeartbeatMillis: 60000})
		tok := wire.NewToken().String()
		for _, cb := range bad(tok) {
			b, _ = wire.AppendJSONEvent(b, wire.EventConnect, wire.ConnectEvent{Token: tok, Client: "c",
				ClientAddr: "192.0.2.1:1", Callback: cb, DeadlineUnixMilli: time.Now().Add(time.Minute).UnixMilli()})
		}
		b, _ = wire.AppendJSONEvent(b, wire.EventConnect, wire.ConnectEvent{Token: good, Client: "c",
			ClientAddr: "192.0.2.1:1", Callback: "http://" + trap.addr + wire.PathAccept + good,
			DeadlineUnixMilli: time.Now().Add(time.Minute).UnixMilli()})
		if _, err := c.Write(b); err != nil {
			return
		}
		_ = c.SetDeadline(time.Time{})
		silence(c)
	})
	nbad = len(bad(good))
	ln, err := endpoints.ListenRelay("tcp", "svc", h.addr, append(hostileOpts(), endpoints.WithToken("secret-token"))...)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	c, err := acceptWithin(ln, ioTimeout)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	got := make([]byte, 5)
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Errorf("accepted conn read %q, %v; want hello", got, err)
	}
	if name := c.(*endpoints.Conn).ClientName(); name != "far" {
		t.Errorf("client name %q, want far (from the trap's 101)", name)
	}
	c.Close()
	rl := ln.(*endpoints.Listener)
	relaytest.Eventually(t, ioTimeout, func() bool { return rl.Failed() == int64(nbad) }, "refused callbacks not counted")
	mu.Lock()
	defer mu.Unlock()
	want := "POST " + wire.PathAccept + good + " reg=" + regID + " auth="
	if len(seen) != 1 || seen[0] != want {
		t.Errorf("trap host saw %q, want only %q", seen, want)
	}
}

// TestAbsoluteCallbackTLS checks an absolute https callback from an https
// front: the listener calls back at the host it names with TLS verified by
// WithRelayTLS's roots, so a back relay those roots trust gets the
// callback and the bytes flow; one with a certificate from another CA is
// refused by the TLS handshake, counted in Failed, and the dial made there
// fails.
func TestAbsoluteCallbackTLS(t *testing.T) {
	ca := relaytest.NewCA(t, "cluster CA")
	cert := ca.Issue(t, "node", "127.0.0.1")
	for _, c := range []struct {
		name    string
		trusted bool
	}{{"trusted", true}, {"untrusted", false}} {
		t.Run(c.name, func(t *testing.T) {
			var back *relaytest.Relay
			if c.trusted {
				back = relaytest.Start(t, relaynode.Config{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
			} else {
				back = relaytest.StartTLS(t, relaynode.Config{})
			}
			dial := func() (net.Conn, error) {
				d := &net.Dialer{Timeout: ioTimeout}
				return tls.DialWithDialer(d, "tcp", back.Addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			}
			front := startCrossNodeWith(t, dial, &tls.Config{Certificates: []tls.Certificate{cert}}, "https://"+back.Addr)
			var logs syncBuffer
			ln, err := endpoints.ListenRelay("tcp", serverName, "https://"+front.addr,
				endpoints.WithRelayTLS(&tls.Config{RootCAs: ca.Pool}),
				endpoints.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			defer ln.Close()
			srv := relaytest.ServeEcho(t, ln)
			rl := ln.(*endpoints.Listener)
			d := endpoints.NewRelayDialer("https://"+back.Addr, clientName,
				endpoints.WithRelayTLS(&tls.Config{InsecureSkipVerify: true}), endpoints.WithDialTimeout(2*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			err = relaytest.Ping(ctx, d, serverName)
			if c.trusted {
				if err != nil || srv.Accepted() != 1 || rl.Failed() != 0 {
					t.Errorf("ping: %v; accepted %d, failed %d; want the echo, 1, 0", err, srv.Accepted(), rl.Failed())
				}
			} else {
				if err == nil {
					t.Error("ping through an untrusted callback host succeeded")
				}
				relaytest.Eventually(t, ioTimeout, func() bool { return rl.Failed() == 1 }, "refused TLS callback not counted")
				if got := logs.String(); !strings.Contains(got, "certificate signed by unknown authority") {
					t.Errorf("log %q, want the callback's verification failure", got)
				}
				if srv.Accepted() != 0 {
					t.Errorf("accepted %d, want 0", srv.Accepted())
				}
			}
			if got := front.callbacks.Load(); got != 0 {
				t.Errorf("%d callbacks went to the front, want 0", got)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package relaynode_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/relaynode/relaytest/v0wire"
)

const v0Bound = 10 * time.Second

// startV0 starts a relay with CompatV0 on.
func startV0(t *testing.T, cfg relaynode.Config) *relaytest.Relay {
	t.Helper()
	cfg.CompatV0 = true
	return relaytest.Start(t, cfg)
}

// v0Echo registers serverID as a v0 server that echoes every connection;
// the registration ends, and its handlers are awaited, in cleanup.
func v0Echo(t *testing.T, addr, serverID string) *v0wire.Server {
	t.Helper()
	s, err := v0wire.Register(addr, serverID, v0Bound)
	if err != nil {
		t.Fatalf("v0 register %s: %v", serverID, err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(relaytest.Echo, nil) }()
	t.Cleanup(func() {
		s.Close()
		<-served
	})
	return s
}

// echoV0 writes payload on c and checks it comes back byte for byte.
func echoV0(t testing.TB, c net.Conn, payload []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(v0Bound))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(payload); errc <- err }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Errorf("read echo: %v", err)
		return
	}
	if err := <-errc; err != nil {
		t.Errorf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("echo differs from the %d bytes sent", len(payload))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// doV0 sends raw bytes on one connection and returns the status code.
func doV0(t *testing.T, addr string, raw []byte) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(v0Bound))
	go func() { _, _ = c.Write(raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCompatV0OffByDefault(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	for _, path := range []string{relaynode.V0PathServer, relaynode.V0PathClient, relaynode.V0PathCallback} {
		got := doV0(t, r.Addr, v0wire.RawRequest(http.MethodConnect, path, v0wire.Body("c", "s")))
		if got == http.StatusOK {
			t.Errorf("%s served with CompatV0 off", path)
		}
	}
	if _, err := v0wire.Register(r.Addr, "svc", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Errorf("v0 register with CompatV0 off: %v, want 404", err)
	}
}

func TestCompatV0WarnsOnce(t *testing.T) {
	var logs syncBuf
	log := slogTo(&logs)
	r := startV0(t, relaynode.Config{Logger: log})
	v0Echo(t, r.Addr, "svc")
	if n := strings.Count(logs.String(), "compat-v0 on: v0 matching is unauthenticated"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	var off syncBuf
	relaytest.Start(t, relaynode.Config{Logger: slogTo(&off)})
	if strings.Contains(off.String(), "compat-v0") {
		t.Errorf("warning with CompatV0 off:\n%s", off.String())
	}
}

// TestCompatV0EventBytes reads the registration stream as bytes: one
// event per dial, exactly as the v0 wire has it, and nothing else.
func TestCompatV0EventBytes(t *testing.T) {
	r := startV0(t, relaynode.Config{Limits: actors.Limits{CallbackTimeout: time.Second}})
	s, err := v0wire.Register(r.Addr, "svc_1", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if te := s.Header.Get("Content-Type"); te != "text/event-stream" {
		t.Errorf("Content-Type %q", te)
	}
	if !s.Chunked {
		t.Error("registration stream not chunked")
	}
	done := make(chan error, 1)
	go func() {
		_, err := v0wire.Dial(r.Addr, "client.A-9", "svc_1", v0Bound)
		done <- err
	}()
	raw, err := s.NextRaw(v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	want := "event: connection\nData: {\"Data\":\"\",\"ClientID\":\"client.A-9\",\"ServerID\":\"svc_1\"}\n\n"
	if string(raw) != want {
		t.Errorf("event\n%q\nwant\n%q", raw, want)
	}
	// No callback: the dial is answered 504 at the engine's deadline.
	if err := <-done; v0wire.Status(err) != http.StatusGatewayTimeout {
		t.Errorf("dial without callback: %v, want 504", err)
	}
	// Nothing else was written on the stream meanwhile (no heartbeat).
	if _, err := s.NextRaw(200 * time.Millisecond); err == nil || !isTimeout(err) {
		t.Errorf("stream carried more than the event: %v", err)
	}
}

func TestCompatV0EchoByteExact(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	v0Echo(t, r.Addr, "svc")
	c, err := v0wire.Dial(r.Addr, "c1", "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// "HTTP/1.1 200 OK" (checked by the client), one header, no
	// Transfer-Encoding.
	if len(c.Header) != 1 || c.Header.Get("Relay-Node") != r.Node.Stats().NodeID {
		t.Errorf("200 header %v, want only Relay-Node", c.Header)
	}
	echoV0(t, c, randomBytes(256<<10))
	st := r.Node.CompatV0Stats()
	if st.Registrations != 1 || st.Callbacks != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCompatV0FiftyConcurrentDials(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	v0Echo(t, r.Addr, "svc")
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("client-%02d", i)
			c, err := v0wire.Dial(r.Addr, id, "svc", v0Bound)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			defer c.Close()
			echoV0(t, c, append([]byte(id+":"), randomBytes(4096)...))
		}()
	}
	wg.Wait()
	relaytest.Eventually(t, v0Bound, func() bool { return r.Node.CompatV0Stats().DialsSpliced == n }, "50 v0 dials spliced")
	st, err := r.Node.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dials["spliced"] != n {
		t.Errorf("relay dials spliced %d, want %d", st.Dials["spliced"], n)
	}
}

// TestCompatV0BesideV1: v1 endpoints work on the same relay; v0 and v1
// clients reach servers of the other wire; names are not shared.
func TestCompatV0BesideV1(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	ln, err := endpoints.ListenRelay("tcp", "v1svc", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ServeEcho(t, ln)
	v0Echo(t, r.Addr, "v0svc")
	d := endpoints.NewRelayDialer(r.Addr, "v1client")

	ctx, cancel := context.WithTimeout(context.Background(), v0Bound)
	defer cancel()
	for _, name := range []string{"v1svc", "v0svc"} {
		if err := relaytest.Ping(ctx, d, name); err != nil {
			t.Errorf("v1 client to %s: %v", name, err)
		}
		c, err := v0wire.Dial(r.Addr, "v0client", name, v0Bound)
		if err != nil {
			t.Errorf("v0 client to %s: %v", name, err)
			continue
		}
		echoV0(t, c, randomBytes(8192))
		c.Close()
	}
	// A v0 registration of a name v1 holds is refused.
	if _, err := v0wire.Register(r.Addr, "v1svc", v0Bound); v0wire.Status(err) != http.StatusConflict {
		t.Errorf("v0 register of a v1 name: %v, want 409", err)
	}
	// An unauthenticated v1 registration of a v0 name gets 409.
	a := relaytest.Do(r.Addr, relaytest.ListenRequest("v0svc"), v0Bound)
	if a.Status != http.StatusConflict {
		t.Errorf("v1 register of a v0 name: %v, want 409", a)
	}
	// And the v0 server still serves.
	c, err := v0wire.Dial(r.Addr, "v0client", "v0svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	echoV0(t, c, []byte("still here"))
	c.Close()
}

// TestCompatV0SameNameBothWires: a v1 client named as a v0 ClientID in
// flight to the same server is told apart by its token: both dials echo.
func TestCompatV0SameNameBothWires(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	v0Echo(t, r.Addr, "svc")
	d := endpoints.NewRelayDialer(r.Addr, "dup")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, err := v0wire.Dial(r.Addr, "dup", "svc", v0Bound)
			if err != nil {
				t.Errorf("v0 dial %d: %v", i, err)
				return
			}
			defer c.Close()
			echoV0(t, c, []byte(fmt.Sprintf("v0 round %d", i)))
		}()
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), v0Bound)
			defer cancel()
			if err := relaytest.Ping(ctx, d, "svc"); err != nil {
				t.Errorf("v1 dial %d: %v", i, err)
			}
		}()
		wg.Wait()
	}
}

// TestCompatV0AuthenticatedTakeover: an authenticated v1 registration of
// a name held by v0 takes it over, and the v0 stream is closed.
func TestCompatV0AuthenticatedTakeover(t *testing.T) {
	p := writeAuth(t, "register svc "+sum("tok"))
	r := startV0(t, relaynode.Config{AuthFile: p})
	s, err := v0wire.Register(r.Addr, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Without credentials a v1 registration is refused (401 in auth mode).
	if a := relaytest.Do(r.Addr, relaytest.ListenRequest("svc"), v0Bound); a.Status != http.StatusUnauthorized {
		t.Errorf("v1 register without token: %v, want 401", a)
	}
	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithToken("tok"))
	if err != nil {
		t.Fatalf("authenticated v1 register: %v", err)
	}
	relaytest.ServeEcho(t, ln)
	if _, err := s.Next(v0Bound); err == nil || isTimeout(err) {
		t.Errorf("v0 stream after takeover: %v, want its end", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), v0Bound)
	defer cancel()
	if err := relaytest.Ping(ctx, endpoints.NewRelayDialer(r.Addr, "c"), "svc"); err != nil {
		t.Errorf("dial after takeover: %v", err)
	}
	if st := r.Node.CompatV0Stats(); st.Takeovers != 1 {
		t.Errorf("takeovers %d, want 1", st.Takeovers)
	}
}

func TestCompatV0HostileBodies(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	big := []byte(`{"Data":"` + strings.Repeat("x", relaynode.V0MaxBody) + `","ServerID":"svc"}`)
	for _, path := range []string{relaynode.V0PathServer, relaynode.V0PathClient, relaynode.V0PathCallback} {
		for _, tt := range []struct {
			body []byte
			want int
		}{
			{big, http.StatusRequestEntityTooLarge},
			{[]byte(`{"ServerID":`), http.StatusBadRequest},
			{[]byte(`not json`), http.StatusBadRequest},
			{v0wire.Body("c", "bad name"), http.StatusBadRequest},
			{v0wire.Body("c\r\nX: y", "svc"), http.StatusBadRequest},
		} {
			if path == relaynode.V0PathServer && strings.Contains(string(tt.body), `"c\r`) {
				continue // registrations carry no ClientID
			}
			if got := doV0(t, r.Addr, v0wire.RawRequest(http.MethodConnect, path, tt.body)); got != tt.want {
				t.Errorf("%s %.40q: %d, want %d", path, tt.body, got, tt.want)
			}
		}
	}
	// A body of exactly the cap is read: an unknown server gets 404.
	head := `{"Data":"`
	tail := `","ClientID":"c","ServerID":"nobody"}`
	exact := []byte(head + strings.Repeat("x", relaynode.V0MaxBody-len(head)-len(tail)) + tail)
	if got := doV0(t, r.Addr, v0wire.RawRequest(http.MethodConnect, relaynode.V0PathClient, exact)); got != http.StatusNotFound {
		t.Errorf("body of exactly %d bytes: %d, want 404", len(exact), got)
	}
	// A declared length over the cap is refused before the body is read.
	raw := []byte("CONNECT /clientconn HTTP/1.1\r\nHost: r\r\nContent-Length: 1000000\r\n\r\n{")
	if got := doV0(t, r.Addr, raw); got != http.StatusRequestEntityTooLarge {
		t.Errorf("declared 1 MB: %d, want 413", got)
	}
	if got := doV0(t, r.Addr, v0wire.RawRequest(http.MethodGet, relaynode.V0PathClient, v0wire.Body("c", "svc"))); got != http.StatusMethodNotAllowed {
		t.Errorf("GET /clientconn: %d, want 405", got)
	}
	if got := doV0(t, r.Addr, v0wire.RawRequest(http.MethodConnect, relaynode.V0PathClient, v0wire.Body("c", "nobody"))); got != http.StatusNotFound {
		t.Errorf("dial of an unknown server: %d, want 404", got)
	}
	st, err := r.Node.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var v0refusals int64
	for _, rf := range st.Refusals {
		if strings.HasPrefix(rf.Route, "v0_") {
			v0refusals += rf.Count
		}
	}
	if v0refusals < 15 {
		t.Errorf("v0 refusals counted: %d, want at least 15", v0refusals)
	}
}

// TestCompatV0ForeignCallback: a callback whose source IP is not the
// registration's is refused and counted, and the dial still gets its
// genuine callback. The other source is a proxy's X-Forwarded-For, so the
// test stays on 127.0.0.1.
func TestCompatV0ForeignCallback(t *testing.T) {
	r := startV0(t, relaynode.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	s, err := v0wire.Register(r.Addr, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dc := dialV0Async(r.Addr, "victim", "svc")
	ev, err := s.Next(v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v0wire.Callback(r.Addr, ev.ClientID, "svc", v0Bound, "X-Forwarded-For: 127.0.0.9"); v0wire.Status(err) != http.StatusForbidden {
		t.Errorf("foreign callback: %v, want 403", err)
	}
	if got := r.Node.CompatV0Stats().CallbacksForeign; got != 1 {
		t.Errorf("foreign callbacks counted %d, want 1", got)
	}
	// A callback for a pair nobody asked for.
	if _, err := v0wire.Callback(r.Addr, "someone", "svc", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Errorf("callback for an unasked pair: %v, want 404", err)
	}
	if _, err := v0wire.Callback(r.Addr, "victim", "nosuch", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Errorf("callback for an unknown server: %v, want 404", err)
	}
	srv, err := v0wire.Callback(r.Addr, ev.ClientID, "svc", v0Bound)
	if err != nil {
		t.Fatalf("genuine callback: %v", err)
	}
	defer srv.Close()
	d := <-dc
	if d.err != nil {
		t.Fatalf("dial: %v", d.err)
	}
	defer d.c.Close()
	go relaytest.Echo(srv)
	echoV0(t, d.c, []byte("for the victim only"))
}

// TestCompatV0DuplicatePair: a second dial of a (ClientID, ServerID) pair
// in flight gets 409, and the first still gets its own server socket.
func TestCompatV0DuplicatePair(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	s, err := v0wire.Register(r.Addr, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dc := dialV0Async(r.Addr, "same", "svc")
	ev, err := s.Next(v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v0wire.Dial(r.Addr, "same", "svc", v0Bound); v0wire.Status(err) != http.StatusConflict {
		t.Errorf("duplicate pair: %v, want 409", err)
	}
	// The same ClientID to another server is another pair.
	if _, err := v0wire.Dial(r.Addr, "same", "other", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Errorf("same client, other server: %v, want 404", err)
	}
	srv, err := v0wire.Callback(r.Addr, ev.ClientID, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := <-dc
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.c.Close()
	if _, err := srv.Write([]byte("to the first dial")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("to the first dial"))
	_ = d.c.SetReadDeadline(time.Now().Add(v0Bound))
	if _, err := io.ReadFull(d.c, got); err != nil || string(got) != "to the first dial" {
		t.Errorf("first dial read %q, %v", got, err)
	}
	// A second callback for the pair finds nothing to answer.
	if _, err := v0wire.Callback(r.Addr, ev.ClientID, "svc", v0Bound); v0wire.Status(err) < 400 {
		t.Errorf("second callback: %v, want a refusal", err)
	}
	if st := r.Node.CompatV0Stats(); st.Duplicates != 1 {
		t.Errorf("duplicates %d, want 1", st.Duplicates)
	}
}

// TestCompatV0Limits: the engine's limits apply to v0 pairs: the pair
// byte limit cuts a v0 pair, and the pending cap refuses a v0 dial.
func TestCompatV0Limits(t *testing.T) {
	r := startV0(t, relaynode.Config{Limits: actors.Limits{PairMaxBytes: 64 << 10, MaxPendingPerName: 1, CallbackTimeout: 2 * time.Second}})
	v0Echo(t, r.Addr, "svc")
	c, err := v0wire.Dial(r.Addr, "c", "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(v0Bound))
	go func() { _, _ = c.Write(make([]byte, 8<<20)) }()
	n, _ := io.Copy(io.Discard, c)
	if n >= 8<<20 {
		t.Errorf("pair relayed %d bytes past its 64 KiB limit", n)
	}
	relaytest.Eventually(t, v0Bound, func() bool { return r.Node.Stats().Actors.PairsMaxBytes == 1 }, "pair cut by bytes")

	s, err := v0wire.Register(r.Addr, "quiet", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := make(chan error, 1)
	go func() { _, err := v0wire.Dial(r.Addr, "a", "quiet", v0Bound); first <- err }()
	if _, err := s.Next(v0Bound); err != nil {
		t.Fatal(err)
	}
	if _, err := v0wire.Dial(r.Addr, "b", "quiet", v0Bound); v0wire.Status(err) != http.StatusServiceUnavailable {
		t.Errorf("dial over MaxPendingPerName: %v, want 503", err)
	}
	if err := <-first; v0wire.Status(err) != http.StatusGatewayTimeout {
		t.Errorf("dial never called back: %v, want 504", err)
	}
}

// TestCompatV0Drain: during a drain new v0 registrations and dials get
// 503, a live v0 pair finishes, and the v0 stream ends without any other
// line.
func TestCompatV0Drain(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	s, err := v0wire.Register(r.Addr, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dc := dialV0Async(r.Addr, "c", "svc")
	ev, err := s.Next(v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := v0wire.Callback(r.Addr, ev.ClientID, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() { relaytest.Echo(srv); srv.Close(); close(echoed) }()
	d := <-dc
	if d.err != nil {
		t.Fatal(d.err)
	}
	// Shutdown waits for pending dials, then for pairs: a pairing whose
	// second side has not yet offered its conn is neither (so the test
	// waits for the pair to start, as it would for a v1 pair).
	relaytest.Eventually(t, v0Bound, func() bool { return r.Node.Stats().Actors.Kinds[actors.KindPair].Live == 1 }, "pair started")
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), v0Bound)
		defer cancel()
		shut <- r.Node.Shutdown(ctx)
	}()
	// The stream ends with no other line (no drain event in v0).
	if _, err := s.Next(v0Bound); err == nil || isTimeout(err) || strings.Contains(err.Error(), "unexpected line") {
		t.Errorf("v0 stream at drain: %v, want its end", err)
	}
	if _, err := v0wire.Dial(r.Addr, "c2", "svc", v0Bound); err == nil {
		t.Error("v0 dial served during the drain")
	} else if st := v0wire.Status(err); st != 0 && st != http.StatusServiceUnavailable {
		t.Errorf("v0 dial during the drain: %v, want 503 or a refused connection", err)
	}
	// The live pair finishes.
	echoV0(t, d.c, []byte("the live pair finishes"))
	d.c.Close()
	<-echoed
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestCompatV0CallbackTimeoutFollowsEngine: with a short engine callback
// timeout, a v0 dial with no callback gets 504 then.
func TestCompatV0CallbackTimeoutFollowsEngine(t *testing.T) {
	r := startV0(t, relaynode.Config{Limits: actors.Limits{CallbackTimeout: 300 * time.Millisecond}})
	s, err := v0wire.Register(r.Addr, "svc", v0Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := v0wire.Dial(r.Addr, "c", "svc", v0Bound); v0wire.Status(err) != http.StatusGatewayTimeout {
		t.Errorf("dial: %v, want 504", err)
	}
	st, err := r.Node.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dials["timeout"] != 1 {
		t.Errorf("dials timeout %d, want 1", st.Dials["timeout"])
	}
}

// BenchmarkCompatDial measures a dial's round trip, dial to first echoed
// byte, for a v0 client to a v0 server and a v1 client to a v1 server on
// one relay, and reports each p50.
//
//	go test -run '^$' -bench BenchmarkCompatDial -benchtime 500x ./relaynode/
func BenchmarkCompatDial(b *testing.B) {
	cfg := relaynode.Config{CompatV0: true}
	r := relaytest.Start(b, cfg)
	s, err := v0wire.Register(r.Addr, "v0svc", v0Bound)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(relaytest.Echo, nil) }()
	defer func() { s.Close(); <-served }()
	ln, err := endpoints.ListenRelay("tcp", "v1svc", r.URL)
	if err != nil {
		b.Fatal(err)
	}
	relaytest.ServeEcho(b, ln)
	d := endpoints.NewRelayDialer(r.Addr, "bench")
	one := func(dial func() (net.Conn, error)) time.Duration {
		start := time.Now()
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(v0Bound))
		if _, err := c.Write([]byte{1}); err != nil {
			b.Fatal(err)
		}
		var x [1]byte
		if _, err := io.ReadFull(c, x[:]); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for _, tt := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"v0", func() (net.Conn, error) { return v0wire.Dial(r.Addr, "bench", "v0svc", v0Bound) }},
		{"v1", func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), v0Bound)
			defer cancel()
			return d.DialContext(ctx, "tcp", "v1svc")
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				lat = append(lat, one(tt.dial))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		})
	}
}

// syncBuf collects log output for concurrent reading.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCompatV0SlowBody: a v0 body that stops coming is refused 400 once
// the header timeout has passed again, not held open.
func TestCompatV0SlowBody(t *testing.T) {
	r := startV0(t, relaynode.Config{ReadHeaderTimeout: 300 * time.Millisecond})
	for _, path := range []string{relaynode.V0PathServer, relaynode.V0PathClient, relaynode.V0PathCallback} {
		raw := "CONNECT " + path + " HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\n{\"Data\":"
		if got := doV0(t, r.Addr, []byte(raw)); got != http.StatusBadRequest {
			t.Errorf("%s with a stalled body: %d, want 400", path, got)
		}
	}
}

// TestCompatV0Metrics: v0 dials and refusals show in /metrics beside v1's.
func TestCompatV0Metrics(t *testing.T) {
	r := startV0(t, relaynode.Config{})
	admin := startAdmin(t, r)
	v0Echo(t, r.Addr, "svc")
	for i := range 3 {
		c, err := v0wire.Dial(r.Addr, fmt.Sprintf("m%d", i), "svc", v0Bound)
		if err != nil {
			t.Fatal(err)
		}
		echoV0(t, c, []byte("metrics"))
		c.Close()
	}
	if _, err := v0wire.Dial(r.Addr, "m", "nobody", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Fatalf("dial of unknown server: %v", err)
	}
	if _, err := v0wire.Callback(r.Addr, "m", "svc", v0Bound); v0wire.Status(err) != http.StatusNotFound {
		t.Fatalf("unasked callback: %v", err)
	}
	relaytest.Eventually(t, v0Bound, func() bool { return r.Node.CompatV0Stats().DialsSpliced == 3 }, "3 v0 dials counted")
	_, text := get(t, admin+"/metrics")
	for series, want := range map[string]float64{
		`relay_dials_total{outcome="spliced"}`:                                                        3,
		`relay_dials_total{outcome="unknown_name"}`:                                                   1,
		`relay_v0_dials_total{outcome="spliced"}`:                                                     3,
		`relay_v0_dials_total{outcome="unknown_name"}`:                                                1,
		`relay_refusals_total{reason="unknown server",route="v0_clientconn",status="404"}`:            1,
		`relay_refusals_total{reason="no dial for this pair",route="v0_servercallback",status="404"}`: 1,
	} {
		if got := metric(t, text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// v0Dialed is the end of a v0 dial made in the background.
type v0Dialed struct {
	c   *v0wire.Conn
	err error
}

// dialV0Async dials server as client on the v0 wire in the background,
// bounded by v0Bound, and delivers the result on the channel.
func dialV0Async(addr, client, server string) <-chan v0Dialed {
	dc := make(chan v0Dialed, 1)
	go func() {
		c, err := v0wire.Dial(addr, client, server, v0Bound)
		dc <- v0Dialed{c, err}
	}()
	return dc
}

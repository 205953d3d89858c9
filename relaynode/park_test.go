package relaynode_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// parkedConn is a park request in flight: its connection and the reader
// its answer will come on.
type parkedConn struct {
	c  net.Conn
	br *bufio.Reader
}

// park sends a park request for name with registration id regID (empty:
// none) and returns without waiting for the answer.
func park(t testing.TB, addr, name, regID string) *parkedConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := []string{up1, up2}
	if regID != "" {
		h = append(h, wire.HeaderRegistration+": "+regID)
	}
	if _, err := io.WriteString(c, req("POST", wire.PathPark+name, h...)); err != nil {
		t.Fatal(err)
	}
	return &parkedConn{c: c, br: bufio.NewReader(c)}
}

// answer reads the park's answer, waiting at most bound, and its body
// unless it is a 101.
func (p *parkedConn) answer(t testing.TB, bound time.Duration) (*http.Response, string) {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(bound))
	defer p.c.SetReadDeadline(time.Time{})
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatalf("park answer: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp, string(body)
}

// readyStream registers name by hand and returns the stream's reader and
// its registration id.
func readyStream(t testing.TB, addr, name string) (*wire.Reader, net.Conn, string) {
	t.Helper()
	sse, c := openStream(t, addr, name)
	ev, err := sse.Next()
	if err != nil || ev.Type != wire.EventReady {
		t.Fatalf("ready event: %v %v", ev.Type, err)
	}
	ready, err := wire.ParseReady(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	return sse, c, ready.Registration
}

// waitParked waits until the relay holds n parked callbacks.
func waitParked(t testing.TB, r *relaytest.Relay, n int64) {
	t.Helper()
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Engine().Parked() == n },
		"parked callbacks never reached the expected count")
}

// TestParkRefusals checks each refusal of a park, answered as plain HTTP.
func TestParkRefusals(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{Limits: actors.Limits{MaxParked: 2}})
	_, _, regID := readyStream(t, r.Addr, "svc")
	other := wire.NewToken().String()
	tests := []struct {
		name   string
		raw    string
		status int
		text   string
	}{
		{"without upgrade", req("POST", wire.PathPark+"svc", wire.HeaderRegistration+": "+regID), 426, "upgrade"},
		{"without registration", req("POST", wire.PathPark+"svc", up1, up2), 400, wire.HeaderRegistration},
		{"malformed registration", req("POST", wire.PathPark+"svc", up1, up2, wire.HeaderRegistration+": x"), 400, wire.HeaderRegistration},
		{"another registration", req("POST", wire.PathPark+"svc", up1, up2, wire.HeaderRegistration+": "+other), 404, "unknown registration"},
		{"unknown name", req("POST", wire.PathPark+"nobody", up1, up2, wire.HeaderRegistration+": "+regID), 404, "unknown registration"},
		{"bad name", req("POST", wire.PathPark+"a%20b", up1, up2), 400, "invalid name"},
		{"wrong method", req("GET", wire.PathPark+"svc", up1, up2), 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, r.Addr, tt.raw)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.text) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tt.status, tt.text)
			}
		})
	}
	// The cap: two parks are held, the third is refused 429.
	park(t, r.Addr, "svc", regID)
	park(t, r.Addr, "svc", regID)
	waitParked(t, r, 2)
	resp, body := park(t, r.Addr, "svc", regID).answer(t, 5*time.Second)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "park limit") {
		t.Fatalf("third park: %d %q, want 429 park limit", resp.StatusCode, body)
	}
	if got := r.Node.Engine().Parked(); got != 2 {
		t.Fatalf("parked = %d after a refused park, want 2", got)
	}
}

// TestParkOverallCap checks that parked callbacks count against
// MaxPending: a park beyond it is refused 503.
func TestParkOverallCap(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{MaxPending: 3})
	_, _, regID := readyStream(t, r.Addr, "svc")
	for range 3 {
		park(t, r.Addr, "svc", regID)
	}
	waitParked(t, r, 3)
	resp, body := park(t, r.Addr, "svc", regID).answer(t, 5*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "too many parked") {
		t.Fatalf("park over MaxPending: %d %q, want 503", resp.StatusCode, body)
	}
}

// TestParkEnds checks how a park ends without a dial: 204 after
// ParkTimeout, and the connection can park again; 410 when its
// registration ends; a park whose client leaves is out of the pool.
func TestParkEnds(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{ParkTimeout: 150 * time.Millisecond})
	_, stream, regID := readyStream(t, r.Addr, "svc")

	p := park(t, r.Addr, "svc", regID)
	start := time.Now()
	resp, _ := p.answer(t, 5*time.Second)
	if resp.StatusCode != http.StatusNoContent || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("idle park: %d after %v, want 204 after the park timeout", resp.StatusCode, time.Since(start))
	}
	waitParked(t, r, 0)
	// Park again on the same connection.
	io.WriteString(p.c, req("POST", wire.PathPark+"svc", up1, up2, wire.HeaderRegistration+": "+regID))
	waitParked(t, r, 1)
	if resp, _ := p.answer(t, 5*time.Second); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("second park on one connection: %d, want 204", resp.StatusCode)
	}

	// A client that leaves takes its park out of the pool.
	gone := park(t, r.Addr, "svc", regID)
	waitParked(t, r, 1)
	gone.c.Close()
	waitParked(t, r, 0)

	// The registration ends: its parks are answered 410.
	r2 := relaytest.Start(t, relaynode.Config{})
	_, stream2, regID2 := readyStream(t, r2.Addr, "svc")
	p2 := park(t, r2.Addr, "svc", regID2)
	waitParked(t, r2, 1)
	stream2.Close()
	if resp, body := p2.answer(t, 5*time.Second); resp.StatusCode != http.StatusGone || !strings.Contains(body, "registration ended") {
		t.Fatalf("park of an ended registration: %d %q, want 410", resp.StatusCode, body)
	}
	waitParked(t, r2, 0)
	_ = stream
}

// TestParkDrain checks that a drain answers parks 503 and refuses new ones.
func TestParkDrain(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	_, _, regID := readyStream(t, r.Addr, "svc")
	p := park(t, r.Addr, "svc", regID)
	waitParked(t, r, 1)
	r.Node.Engine().Drain("test")
	if resp, body := p.answer(t, 5*time.Second); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("park at drain: %d %q, want 503 draining", resp.StatusCode, body)
	}
	resp, _ := park(t, r.Addr, "svc", regID).answer(t, 5*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("park while draining: %d, want 503", resp.StatusCode)
	}
	waitParked(t, r, 0)
}

// TestParkWarmDial checks a dial served by a parked callback: the park is
// answered 101 with the client's name and address, bytes sent with either
// request arrive first and whole, both directions work, no connect event
// is sent for it, and the splice is counted on the warm path.
func TestParkWarmDial(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	sse, stream, regID := readyStream(t, r.Addr, "svc")
	p := park(t, r.Addr, "svc", regID)
	waitParked(t, r, 1)

	client, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	io.WriteString(client, req("POST", wire.PathDial+"svc", up1, up2, wire.HeaderClientName+": alice")+"early")
	resp, _ := p.answer(t, 5*time.Second)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("park answer %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get(wire.HeaderClientName); got != "alice" {
		t.Fatalf("client name %q, want alice", got)
	}
	if got := resp.Header.Get(wire.HeaderClientAddr); got != client.LocalAddr().String() {
		t.Fatalf("client addr %q, want %q", got, client.LocalAddr())
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	cbr := bufio.NewReader(client)
	cresp, err := http.ReadResponse(cbr, nil)
	if err != nil || cresp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("dial answer: %v %v", cresp, err)
	}
	got := make([]byte, 5)
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(p.br, got); err != nil || string(got) != "early" {
		t.Fatalf("server read %q, %v; want the client's early bytes", got, err)
	}
	io.WriteString(p.c, "hello")
	if _, err := io.ReadFull(cbr, got); err != nil || string(got) != "hello" {
		t.Fatalf("client read %q, %v", got, err)
	}
	st := r.Node.Engine().Stats()
	if w, c := total(st.SpliceLatencyWarm.Counts), total(st.SpliceLatency.Counts); w != 1 || c != 0 {
		t.Fatalf("splices warm %d cold %d, want 1 and 0", w, c)
	}
	if r.Node.Engine().Parked() != 0 {
		t.Fatal("the used park is still counted")
	}

	// With the pool empty the next dial goes cold: the first connect event
	// on the stream is its own (none was sent for the warm dial).
	done := make(chan int, 1)
	go func() {
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			done <- 0
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req("POST", wire.PathDial+"svc", up1, up2))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			done <- 0
			return
		}
		done <- resp.StatusCode
	}()
	stream.SetReadDeadline(time.Now().Add(5 * time.Second))
	ev, err := sse.Next()
	for err == nil && ev.Type != wire.EventConnect {
		ev, err = sse.Next()
	}
	if err != nil {
		t.Fatal(err)
	}
	ce, err := wire.ParseConnect(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	io.WriteString(cb, req("POST", ce.Callback, up1, up2, wire.HeaderRegistration+": "+regID))
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(cb), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("callback for the first connect event: %v %v, want 101", resp, err)
	}
	if s := <-done; s != http.StatusSwitchingProtocols {
		t.Fatalf("cold dial answered %d, want 101", s)
	}
}

func total(counts []uint64) uint64 {
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n
}

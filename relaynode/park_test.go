package relaynode_test

import (
	"context"
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

// park sends a park request for name with registration id regID (empty:
// none) and returns without waiting for the answer. The connection is
// closed in cleanup.
func park(t testing.TB, addr, name, regID string) *parkedConn {
	t.Helper()
	c, err := relaytest.DialRaw(nil, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Time{})
	if err := c.Send(parkRequest(name, regID)); err != nil {
		t.Fatal(err)
	}
	return &parkedConn{c}
}

// parkRequest is a park for name with registration id regID (empty: none).
func parkRequest(name, regID string) string {
	if regID == "" {
		return relaytest.Request("POST", wire.PathPark+name, relaytest.UpgradeHeaders)
	}
	return relaytest.AcceptRequest(wire.PathPark+name, regID)
}

// parkedConn is a park request in flight.
type parkedConn struct{ *relaytest.Conn }

// answer reads the park's answer, waiting at most bound, and fails the
// test if there is none.
func (p *parkedConn) answer(t testing.TB, bound time.Duration) relaytest.Answer {
	t.Helper()
	a := p.Answer(bound)
	if a.Status == 0 {
		t.Fatalf("park answer: %v", a.Err)
	}
	return a
}

// readyStream registers name by hand and returns the stream's reader, its
// connection and its registration id. The stream is closed in cleanup.
func readyStream(t testing.TB, addr, name string) (*wire.Reader, net.Conn, string) {
	t.Helper()
	st, a := relaytest.Listen(nil, addr, name, 5*time.Second)
	if st == nil {
		t.Fatalf("listen %q: %v", name, a)
	}
	t.Cleanup(func() { st.Close() })
	return st.Events, st, st.Registration
}

// waitParked waits until the relay holds n parked callbacks.
func waitParked(t testing.TB, r *relaytest.Relay, n int64) {
	t.Helper()
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Stats().Parked == n },
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
		{"without upgrade", relaytest.Request("POST", wire.PathPark+"svc", wire.HeaderRegistration+": "+regID), 426, "upgrade"},
		{"without registration", relaytest.Request("POST", wire.PathPark+"svc", relaytest.UpgradeHeaders), 400, wire.HeaderRegistration},
		{"malformed registration", relaytest.Request("POST", wire.PathPark+"svc", relaytest.UpgradeHeaders, wire.HeaderRegistration+": x"), 400, wire.HeaderRegistration},
		{"another registration", relaytest.Request("POST", wire.PathPark+"svc", relaytest.UpgradeHeaders, wire.HeaderRegistration+": "+other), 404, "unknown registration"},
		{"unknown name", relaytest.Request("POST", wire.PathPark+"nobody", relaytest.UpgradeHeaders, wire.HeaderRegistration+": "+regID), 404, "unknown registration"},
		{"bad name", relaytest.Request("POST", wire.PathPark+"a%20b", relaytest.UpgradeHeaders), 400, "invalid name"},
		{"wrong method", relaytest.Request("GET", wire.PathPark+"svc", relaytest.UpgradeHeaders), 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, r.Addr, tt.raw)
			if a.Status != tt.status || !strings.Contains(a.Reason, tt.text) {
				t.Fatalf("got %d %q, want %d containing %q", a.Status, a.Reason, tt.status, tt.text)
			}
		})
	}
	// The cap: two parks are held, the third is refused 429.
	park(t, r.Addr, "svc", regID)
	park(t, r.Addr, "svc", regID)
	waitParked(t, r, 2)
	a := park(t, r.Addr, "svc", regID).answer(t, 5*time.Second)
	if a.Status != http.StatusTooManyRequests || !strings.Contains(a.Reason, "park limit") {
		t.Fatalf("third park: %d %q, want 429 park limit", a.Status, a.Reason)
	}
	if got := r.Node.Stats().Parked; got != 2 {
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
	a := park(t, r.Addr, "svc", regID).answer(t, 5*time.Second)
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Reason, "too many parked") {
		t.Fatalf("park over MaxPending: %d %q, want 503", a.Status, a.Reason)
	}
}

// TestParkEnds checks how a park ends without a dial: 204 after
// ParkTimeout, and the connection can park again; 410 when its
// registration ends; a park whose client leaves is out of the pool.
func TestParkEnds(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{ParkTimeout: 150 * time.Millisecond})
	_, stream, regID := readyStream(t, r.Addr, "svc")

	start := time.Now() // before the request: the 204 cannot come sooner than ParkTimeout after it
	p := park(t, r.Addr, "svc", regID)
	a := p.answer(t, 5*time.Second)
	if took := time.Since(start); a.Status != http.StatusNoContent || took < 150*time.Millisecond {
		t.Fatalf("idle park: %v after %v, want 204, not before the park timeout", a, took)
	}
	waitParked(t, r, 0)
	// Park again on the same connection.
	if err := p.Send(parkRequest("svc", regID)); err != nil {
		t.Fatal(err)
	}
	waitParked(t, r, 1)
	if a := p.answer(t, 5*time.Second); a.Status != http.StatusNoContent {
		t.Fatalf("second park on one connection: %d, want 204", a.Status)
	}

	// A client that leaves takes its park out of the pool.
	gone := park(t, r.Addr, "svc", regID)
	waitParked(t, r, 1)
	gone.Close()
	waitParked(t, r, 0)

	// The registration ends: its parks are answered 410.
	r2 := relaytest.Start(t, relaynode.Config{})
	_, stream2, regID2 := readyStream(t, r2.Addr, "svc")
	p2 := park(t, r2.Addr, "svc", regID2)
	waitParked(t, r2, 1)
	stream2.Close()
	if a := p2.answer(t, 5*time.Second); a.Status != http.StatusGone || !strings.Contains(a.Reason, "registration ended") {
		t.Fatalf("park of an ended registration: %d %q, want 410", a.Status, a.Reason)
	}
	waitParked(t, r2, 0)
	_ = stream
}

// TestParkDrain checks that a drain answers parked callbacks 503 and that
// the shutting-down relay takes no new connection.
func TestParkDrain(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	_, _, regID := readyStream(t, r.Addr, "svc")
	p := park(t, r.Addr, "svc", regID)
	waitParked(t, r, 1)
	// Shutdown drains first; it then waits for the registration, which
	// this test holds open, until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- r.Node.Shutdown(ctx) }()
	t.Cleanup(func() { cancel(); <-shut })
	if a := p.answer(t, 5*time.Second); a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Reason, "draining") {
		t.Fatalf("park at drain: %d %q, want 503 draining", a.Status, a.Reason)
	}
	// Shutdown closes the listener once no dial is pending, a moment
	// after it answered the parks: from then a new park cannot even
	// connect. (A park that reaches a draining engine is refused 503:
	// actors' TestParkedFailWhileDraining.)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a relay shutting down still takes connections 5s after its drain")
		}
		time.Sleep(10 * time.Millisecond)
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

	client, err := relaytest.DialRaw(nil, r.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Send(relaytest.DialRequest("svc", "alice") + "early"); err != nil {
		t.Fatal(err)
	}
	a := p.answer(t, 5*time.Second)
	if a.Status != http.StatusSwitchingProtocols {
		t.Fatalf("park answer %d, want 101", a.Status)
	}
	if got := a.Header.Get(wire.HeaderClientName); got != "alice" {
		t.Fatalf("client name %q, want alice", got)
	}
	if got := a.Header.Get(wire.HeaderClientAddr); got != client.LocalAddr().String() {
		t.Fatalf("client addr %q, want %q", got, client.LocalAddr())
	}
	if ca := client.Answer(5 * time.Second); ca.Status != http.StatusSwitchingProtocols {
		t.Fatalf("dial answer: %v", ca)
	}
	got := make([]byte, 5)
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(p.R, got); err != nil || string(got) != "early" {
		t.Fatalf("server read %q, %v; want the client's early bytes", got, err)
	}
	io.WriteString(p, "hello")
	if _, err := io.ReadFull(client.R, got); err != nil || string(got) != "hello" {
		t.Fatalf("client read %q, %v", got, err)
	}
	st := r.Node.Stats().Actors
	if w, c := total(st.SpliceLatencyWarm.Counts), total(st.SpliceLatency.Counts); w != 1 || c != 0 {
		t.Fatalf("splices warm %d cold %d, want 1 and 0", w, c)
	}
	if r.Node.Stats().Parked != 0 {
		t.Fatal("the used park is still counted")
	}

	// With the pool empty the next dial goes cold: the first connect event
	// on the stream is its own (none was sent for the warm dial).
	done := make(chan int, 1)
	go func() { done <- relaytest.Do(r.Addr, relaytest.DialRequest("svc", ""), 5*time.Second).Status }()
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
	cb, ca := relaytest.Upgrade(r.Addr, relaytest.AcceptRequest(ce.Callback, regID), 5*time.Second)
	if cb == nil {
		t.Fatalf("callback for the first connect event: %v, want 101", ca)
	}
	defer cb.Close()
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

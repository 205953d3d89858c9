package actors

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// livePair runs the flow up to a started pair on e for name and returns
// the far ends: what the client and the server hold.
func livePair(t testing.TB, e *Engine, name string) (client, server net.Conn) {
	t.Helper()
	client, server = livePairMaybe(t, e, name)
	waitLive(t, e, KindPair, 1)
	return client, server
}

// readEOF reads c to a clean end within 3s and returns what it read.
func readEOF(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read to EOF: %v after %d bytes", err, len(b))
	}
	return b
}

// readCut reads c until the relay cuts it, and returns what it read. A cut
// must arrive as an error (a reset), never as a clean EOF that would pass a
// truncated stream off as whole. The 10s deadline is a bound against hangs.
func readCut(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	switch {
	case err == nil:
		t.Fatalf("read a clean EOF after %d bytes, want the cut as an error", len(b))
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("not cut within 10s (%d bytes read)", len(b))
	}
	return b
}

func TestPairIdleTimeout(t *testing.T) {
	const idle = time.Second
	e := newEngine(t, Config{Limits: Limits{PairIdleTimeout: idle}})
	client, server := livePair(t, e, "idle")
	// Activity in one direction keeps the pair alive past the timeout:
	// a byte every tenth of it, for one and a half times it, so that only
	// a stall of the whole timeout could cut the pair.
	var last time.Time
	sent := 0
	for begin := time.Now(); time.Since(begin) < idle*3/2; sent++ {
		client.Write([]byte("k"))
		last = time.Now()
		time.Sleep(idle / 10)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, sent)
	if _, err := io.ReadFull(server, got); err != nil || string(got) != strings.Repeat("k", sent) {
		t.Fatalf("server read %q, %v; want %d bytes", got, err, sent)
	}
	if e.Stats().PairsIdle != 0 {
		t.Fatal("an active pair was cut as idle")
	}
	// Silence both ways: the relay cuts the pair, never before an idle
	// timeout after the last byte (less the quarter-timeout wake-up
	// granularity): a lower bound, which load cannot break.
	readCut(t, client)
	readCut(t, server)
	if d := time.Since(last); d < idle*3/4 {
		t.Fatalf("cut %v after the last byte, before the idle timeout %v", d, idle)
	}
	waitLive(t, e, KindPair, 0)
	if got := e.Stats().PairsIdle; got != 1 {
		t.Fatalf("PairsIdle = %d, want 1", got)
	}
}

func TestPairMaxBytes(t *testing.T) {
	const limit = 3<<20 + 5 // more than one chunk
	e := newEngine(t, Config{Limits: Limits{PairMaxBytes: limit}})
	client, server := livePair(t, e, "bytes")
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := client.Write(buf); err != nil {
				return
			}
		}
	}()
	// The cut is a reset, which discards what is still in flight: the
	// server reads at most the limit, then an error.
	got := readCut(t, server)
	if len(got) > limit {
		t.Fatalf("server got %d bytes, more than the limit %d", len(got), limit)
	}
	waitLive(t, e, KindPair, 0)
	if st := e.Stats(); st.PairsMaxBytes != 1 {
		t.Fatalf("PairsMaxBytes = %d, want 1", st.PairsMaxBytes)
	}
}

// TestPairMaxBytesCleanEnd checks that a transfer of exactly the limit
// that then ends cleanly is not cut: half-close still works.
func TestPairMaxBytesCleanEnd(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{PairMaxBytes: 1000}})
	client, server := livePair(t, e, "exact")
	client.Write(make([]byte, 1000))
	client.(*net.TCPConn).CloseWrite()
	if got := readEOF(t, server); len(got) != 1000 {
		t.Fatalf("server got %d, want 1000", len(got))
	}
	server.Write([]byte("reply"))
	server.Close()
	if got := readEOF(t, client); string(got) != "reply" {
		t.Fatalf("client got %q", got)
	}
	if st := e.Stats(); st.PairsMaxBytes != 0 {
		t.Fatalf("PairsMaxBytes = %d, want 0", st.PairsMaxBytes)
	}
}

func TestPairMaxDuration(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{PairMaxDuration: 200 * time.Millisecond}})
	start := time.Now() // before the pair: its cut cannot come sooner than 200ms after
	client, server := livePair(t, e, "dur")
	readCut(t, client)
	readCut(t, server)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("cut after %v", d)
	}
	waitLive(t, e, KindPair, 0)
	if got := e.Stats().PairsMaxDuration; got != 1 {
		t.Fatalf("PairsMaxDuration = %d, want 1", got)
	}
}

// TestTakeover checks that a registration's own id takes its name back at
// once, and that anyone else still gets 409.
func TestTakeover(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	old, _ := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "x"})
	pd, _ := e.Dial(ctx, "svc", "", "x")
	if _, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "y", Replaces: wire.NewToken()}); status(err) != http.StatusConflict {
		t.Fatalf("takeover with a wrong id: %v, want 409", err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "y"}); status(err) != http.StatusConflict {
		t.Fatalf("plain duplicate: %v, want 409", err)
	}
	nu, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "y", Replaces: old.ID})
	if err != nil {
		t.Fatalf("takeover with the old id: %v", err)
	}
	select {
	case <-old.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the replaced registration did not end")
	}
	if o := pd.Wait(ctx); status(o.Err) != http.StatusBadGateway {
		t.Fatalf("old registration's pending dial: %+v, want 502", o)
	}
	if _, err := e.Dial(ctx, "svc", "", "x"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, nu); ev.Type != wire.EventConnect {
		t.Fatalf("new registration got %+v", ev)
	}
	if got := e.Stats().Replaced; got != 1 {
		t.Fatalf("Replaced = %d", got)
	}
}

// TestGroupRoundRobin checks that authenticated registrations of one name
// form a group, dials are spread over its members in turn, and a member
// that leaves fails its own pending dials while the group keeps serving.
func TestGroupRoundRobin(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	var regs []*Registration
	for i := range 3 {
		reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "x", Authenticated: true})
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		regs = append(regs, reg)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "y"}); status(err) != http.StatusConflict {
		t.Fatalf("unauthenticated duplicate: %v, want 409", err)
	}
	// Six dials: two events each, in turn.
	var pds []*PendingDial
	for range 6 {
		pd, err := e.Dial(ctx, "svc", "", "c")
		if err != nil {
			t.Fatal(err)
		}
		pds = append(pds, pd)
	}
	for i, reg := range regs {
		if reg.Queued() != 2 {
			t.Fatalf("member %d has %d events queued, want 2", i, reg.Queued())
		}
	}
	// Member 0 leaves: its two pending dials fail with 502 at once.
	regs[0].Close()
	failed := 0
	for _, pd := range pds {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if o := pd.Wait(wctx); status(o.Err) == http.StatusBadGateway {
			failed++
		}
		cancel()
	}
	if failed != 2 {
		t.Fatalf("%d dials failed with 502, want the leaving member's 2", failed)
	}
	// The group keeps serving over the two others.
	for range 4 {
		if _, err := e.Dial(ctx, "svc", "", "c"); err != nil {
			t.Fatalf("dial after a member left: %v", err)
		}
	}
	// Each remaining member: its own 2 first events were cancelled with
	// the rest, and now 2 more.
	infos, err := e.Registrations(ctx)
	if err != nil || len(infos) != 2 {
		t.Fatalf("registrations = %+v, %v", infos, err)
	}
}

// TestSpliceLatencyObserved checks the dial-to-splice histogram records a
// sane duration for each pair: counted once, positive, and short.
func TestSpliceLatencyObserved(t *testing.T) {
	e := newEngine(t, Config{})
	livePair(t, e, "lat")
	// Live counts a pair at spawn; the observation is in its Started.
	var h Histogram
	var n uint64
	for deadline := time.Now().Add(3 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h = e.Stats().SpliceLatency
		n = 0
		for _, c := range h.Counts {
			n += c
		}
	}
	if n != 1 || h.Sum <= 0 || h.Sum > 10*time.Second {
		t.Fatalf("histogram = %d observations, sum %v; want 1 and a short positive sum", n, h.Sum)
	}
}

// TestYieldingTakeover checks RegisterRequest.Yields: an authenticated
// registration ends members that all yield and holds the name alone; an
// unauthenticated one still gets 409; and a group with one member that
// does not yield is joined, as before.
func TestYieldingTakeover(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	y1, err := e.Register(ctx, RegisterRequest{Name: "old", ClientAddr: "a", Yields: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "old", ClientAddr: "b"}); status(err) != http.StatusConflict {
		t.Fatalf("unauthenticated register of a yielding name: %v, want 409", err)
	}
	auth, err := e.Register(ctx, RegisterRequest{Name: "old", ClientAddr: "c", Authenticated: true})
	if err != nil {
		t.Fatalf("authenticated takeover: %v", err)
	}
	select {
	case <-y1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the yielding registration did not end within 5s")
	}
	// The name is the new registration's alone: every dial reaches it.
	for i := range 3 {
		pd, err := e.Dial(ctx, "old", "", "x")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if ev := nextEvent(t, auth); ev.Connect.Token != pd.Token.String() {
			t.Fatalf("dial %d: event token %q, want %q", i, ev.Connect.Token, pd.Token)
		}
		pd.Cancel()
	}
	if infos, err := e.Registrations(ctx); err != nil || len(infos) != 1 {
		t.Fatalf("registrations %v, %v; want 1", infos, err)
	}

	// A member that does not yield keeps the group: the authenticated
	// registration joins it.
	if _, err := e.Register(ctx, RegisterRequest{Name: "mixed", ClientAddr: "a", Yields: true}); err != nil {
		t.Fatal(err)
	}
	keep, err := e.Register(ctx, RegisterRequest{Name: "mixed", ClientAddr: "b", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "mixed", ClientAddr: "c", Authenticated: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-keep.Done():
		t.Fatal("a registration that does not yield was ended")
	case <-time.After(100 * time.Millisecond):
	}
}

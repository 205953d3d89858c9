package actors

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func woken(t testing.TB, p *Parked) {
	t.Helper()
	select {
	case <-p.Woken():
	case <-time.After(2 * time.Second):
		t.Fatal("parked callback not woken")
	}
}

func notWoken(t testing.TB, p *Parked) {
	t.Helper()
	select {
	case <-p.Woken():
		t.Fatal("parked callback woken")
	default:
	}
}

// TestParkedDial checks the warm path in the engine: a dial goes to the
// oldest parked callback with no connect event, its token is an ordinary
// callback's, and a parked callback given back (Fail) passes the dial to
// the next parked one, then to the stream.
func TestParkedDial(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := e.Park(ctx, "a", reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.Park(ctx, "a", reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Parked() != 2 {
		t.Fatalf("parked = %d, want 2", e.Parked())
	}
	pd, err := e.Dial(ctx, "a", "c", "1.2.3.4:5")
	if err != nil {
		t.Fatal(err)
	}
	woken(t, p1)
	notWoken(t, p2)
	if p1.Token() != pd.Token || reg.Queued() != 0 {
		t.Fatalf("warm dial: token %v (want %v), %d events queued (want 0)", p1.Token(), pd.Token, reg.Queued())
	}
	if p1.Leave() {
		t.Fatal("Leave after a wake reported no dial")
	}
	// p1's connection is gone: the dial moves to p2.
	p1.Fail()
	woken(t, p2)
	if p2.Token() != pd.Token {
		t.Fatal("the given-back dial reached p2 with another token")
	}
	// p2 fails too: the dial goes to the stream as a connect event.
	p2.Fail()
	ev := nextEvent(t, reg)
	if ev.Connect.Token != pd.Token.String() || ev.Connect.ClientAddr != "1.2.3.4:5" || ev.Connect.Client != "c" {
		t.Fatalf("connect event %+v, want the dial's", ev.Connect)
	}
	pr, err := e.Callback(ctx, pd.Token, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o := pd.Wait(ctx); o.Pairing != pr {
		t.Fatalf("outcome %+v, want the callback's pairing", o)
	}
	if pr.warm {
		t.Fatal("a dial served through its connect event is counted warm")
	}
	pr.Abort(Server)
	if e.Parked() != 0 {
		t.Fatalf("parked = %d, want 0", e.Parked())
	}
}

// TestParkedLeave checks that a parked callback that leaves is never
// handed a dial, and that the registration's end and a drain empty the
// pool.
func TestParkedLeave(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{MaxParked: 1}})
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	p, err := e.Park(ctx, "a", reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Park(ctx, "a", reg.ID); status(err) != http.StatusTooManyRequests {
		t.Fatalf("park over the cap: %v, want 429", err)
	}
	if !p.Leave() {
		t.Fatal("Leave of a waiting callback reported a dial")
	}
	pd, err := e.Dial(ctx, "a", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	notWoken(t, p)
	if ev := nextEvent(t, reg); ev.Connect.Token != pd.Token.String() {
		t.Fatal("dial after Leave did not go to the stream")
	}
	pd.Cancel()
	waitParkedCount(t, e, 0)

	// The registration ends: the pool empties and parks are refused.
	p, _ = e.Park(ctx, "a", reg.ID)
	reg.Close()
	<-reg.Done()
	waitParkedCount(t, e, 0)
	if !p.Leave() {
		t.Fatal("Leave after the registration ended reported a dial")
	}
	if _, err := e.Park(ctx, "a", reg.ID); status(err) != http.StatusNotFound {
		t.Fatalf("park of an ended registration: %v, want 404", err)
	}

	// A drain empties the pool and refuses parks with 503.
	reg2, _ := e.Register(ctx, RegisterRequest{Name: "b", ClientAddr: "x"})
	if _, err := e.Park(ctx, "b", reg2.ID); err != nil {
		t.Fatal(err)
	}
	e.Drain("test")
	<-reg2.Drained()
	waitParkedCount(t, e, 0)
	if _, err := e.Park(ctx, "b", reg2.ID); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("park while draining: %v, want 503", err)
	}
}

func waitParkedCount(t testing.TB, e *Engine, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for e.Parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked = %d, want %d", e.Parked(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestParkedFailWhileDraining checks that a dial given back by its parked
// callback after a drain is answered at once (503), not queued on a stream
// that may have written its drain event already and reads no more.
func TestParkedFailWhileDraining(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	p, err := e.Park(ctx, "a", reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := e.Dial(ctx, "a", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	woken(t, p)
	e.Drain("test")
	<-reg.Drained()
	p.Fail()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if o := pd.Wait(wctx); status(o.Err) != http.StatusServiceUnavailable {
		t.Fatalf("outcome %+v, want 503 at once", o)
	}
	if reg.Queued() != 0 {
		t.Fatalf("%d events queued after the drain, want 0", reg.Queued())
	}
}

package actors

import (
	"context"
	"errors"
	"testing"
	"time"
)

// WaitNone and Registration.Settled are signals: they hold while a dial is
// pending and are released by the dial's end.
func TestZeroSignals(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	if err := e.WaitNone(ctx, KindPending); err != nil {
		t.Fatalf("WaitNone with nothing pending: %v", err)
	}
	reg, err := e.Register(ctx, RegisterRequest{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	pd, err := e.Dial(ctx, "svc", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.WaitNone(ended, KindPending); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitNone with a dial pending and ctx ended: %v, want context.Canceled", err)
	}
	e.Drain("test")
	select {
	case <-reg.Drained():
	case <-time.After(3 * time.Second):
		t.Fatal("not drained")
	}
	select {
	case <-reg.Settled():
		t.Fatal("settled with a dial pending")
	default:
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	waited := make(chan error, 1)
	go func() { waited <- e.WaitNone(wctx, KindPending) }()
	pd.Cancel()
	if err := <-waited; err != nil {
		t.Fatalf("WaitNone after the dial ended: %v", err)
	}
	if n := e.Live(KindPending); n != 0 {
		t.Fatalf("WaitNone returned with %d pending", n)
	}
	select {
	case <-reg.Settled():
	case <-time.After(3 * time.Second):
		t.Fatal("not settled after its last dial ended")
	}
}

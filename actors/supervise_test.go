package actors

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// failOn makes the first message of kind k that match accepts panic.
func failOn[M any](e *Engine, k Kind) {
	e.panicOn.Store(&panicHook{kind: k, match: func(msg any) bool { _, ok := msg.(M); return ok }})
}

// closedWithin reports whether c is closed within 3s.
func closedWithin(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-time.After(3 * time.Second):
		return false
	}
}

func waitOutcome(t *testing.T, pd *PendingDial) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pd.Wait(ctx)
}

// Each actor kind, failing on a request, is stopped by its supervisor:
// the request it failed on is answered 500, the requests waiting on its
// state are answered (502 for dials of a failed registration), its
// counts return to zero, and the sockets it held are cut.
func TestPanicInEachActorKind(t *testing.T) {
	ctx := context.Background()

	t.Run("directory", func(t *testing.T) {
		e := newEngine(t, Config{})
		failDialOn(t, e, kindDirectory, "directory")
		waitLive(t, e, KindDirectory, 0)
		waitLive(t, e, KindListener, 0)
		waitLive(t, e, KindPending, 0)
		if _, err := e.Register(ctx, RegisterRequest{Name: "other"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("register after the directory failed: %v, want ErrClosed", err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("listener", func(t *testing.T) {
		e := newEngine(t, Config{})
		failDialOn(t, e, kindListener, "listener")
		waitLive(t, e, KindListener, 0)
		waitLive(t, e, KindPending, 0)
		// The directory forgot the name: it can be registered again.
		if _, err := e.Register(ctx, RegisterRequest{Name: "svc"}); err != nil {
			t.Fatalf("register the name again: %v", err)
		}
	})

	t.Run("pending", func(t *testing.T) {
		e := newEngine(t, Config{})
		reg, err := e.Register(ctx, RegisterRequest{Name: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		pd, err := e.Dial(ctx, "svc", "", "x")
		if err != nil {
			t.Fatal(err)
		}
		nextEvent(t, reg)
		failOn[*callbackMsg](e, kindPending)
		if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusInternalServerError {
			t.Fatalf("callback the pending dial failed on: %v, want 500", err)
		}
		if o := waitOutcome(t, pd); status(o.Err) != http.StatusBadGateway {
			t.Fatalf("pending dial: %+v, want 502", o)
		}
		waitLive(t, e, KindPending, 0)
		deadline := time.Now().Add(3 * time.Second)
		for reg.Pending() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := reg.Pending(); n != 0 {
			t.Fatalf("registration still counts %d pending dials", n)
		}
		// The token is spent, and the registration serves on.
		if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusGone {
			t.Fatalf("callback again: %v, want 410", err)
		}
		livePairOn(t, e, reg)
	})

	for _, tc := range []struct {
		name string
		fail func(e *Engine)
	}{
		{"pair-started", func(e *Engine) { failOn[*actor.Started](e, kindPair) }},
		{"pair-copying", func(e *Engine) { failOn[*copyDoneMsg](e, kindPair) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			tc.fail(e)
			client, server := livePairMaybe(t, e, "svc")
			if tc.name == "pair-copying" {
				// One direction ends cleanly; the pair fails on its report.
				server.(interface{ CloseWrite() error }).CloseWrite()
			}
			// The direction still copying is cut: its reader sees an
			// error, not a clean end.
			readCut(t, server)
			if tc.name == "pair-started" {
				readCut(t, client)
			}
			waitLive(t, e, KindPair, 0)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// livePairOn splices one pair through reg and checks a byte goes through.
func livePairOn(t *testing.T, e *Engine, reg *Registration) {
	t.Helper()
	ctx := context.Background()
	pd, err := e.Dial(ctx, reg.Name, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, reg)
	p, err := e.Callback(ctx, pd.Token, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	cf, cn := tcpPair(t)
	sf, sn := tcpPair(t)
	defer cf.Close()
	defer sf.Close()
	p.Offer(Client, cn, nil)
	p.Offer(Server, sn, nil)
	if _, err := cf.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	sf.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := sf.Read(b); err != nil || b[0] != 7 {
		t.Fatalf("server read %v, %v; want 7", b, err)
	}
}

// livePairMaybe is livePair without waiting for the pair to be live: the
// pair may fail as it starts.
func livePairMaybe(t testing.TB, e *Engine, name string) (client, server net.Conn) {
	t.Helper()
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: name, ClientAddr: "x"})
	if err != nil {
		t.Fatal(err)
	}
	pd, err := e.Dial(ctx, name, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, reg)
	p, err := e.Callback(ctx, pd.Token, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	clientFar, clientNear := tcpPair(t)
	serverFar, serverNear := tcpPair(t)
	t.Cleanup(func() { clientFar.Close(); serverFar.Close() })
	p.Offer(Client, clientNear, nil)
	p.Offer(Server, serverNear, nil)
	return clientFar, serverFar
}

// failDialOn registers "svc", leaves one dial of it pending, and makes
// the actor of kind fail on the next dial. It checks that the dial it
// failed on is answered 500, the pending dial 502, and that the
// registration ends.
func failDialOn(t *testing.T, e *Engine, kind Kind, what string) {
	t.Helper()
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	pd, err := e.Dial(ctx, "svc", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	failOn[*dialMsg](e, kind)
	if _, err := e.Dial(ctx, "svc", "", "x"); status(err) != http.StatusInternalServerError {
		t.Fatalf("dial the %s failed on: %v, want 500", what, err)
	}
	if o := waitOutcome(t, pd); status(o.Err) != http.StatusBadGateway {
		t.Fatalf("pending dial: %+v, want 502", o)
	}
	if !closedWithin(reg.Done()) {
		t.Fatalf("registration not ended after its %s failed", what)
	}
}

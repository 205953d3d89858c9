package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// mailboxSets are the mailbox settings TestSplice runs over: each kind
// everywhere, and a bounded mailbox on each of the directory, listener and
// pending actors in turn (at most one of them may be), with the pair's.
var mailboxSets = func() []Mailboxes {
	u, l, b := Mailbox{Kind: MailboxUnbounded}, Mailbox{Kind: MailboxUnboundedLockfree}, Mailbox{Kind: MailboxBounded, Size: 64}
	return []Mailboxes{
		{Directory: u, Listener: u, Pending: u, Pair: u},
		{Directory: l, Listener: l, Pending: l, Pair: l},
		{Directory: b, Listener: u, Pending: u, Pair: b},
		{Directory: u, Listener: b, Pending: u, Pair: b},
		{Directory: u, Listener: u, Pending: b, Pair: b},
	}
}()

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func status(err error) int {
	var rf *Refusal
	if errors.As(err, &rf) {
		return rf.Status
	}
	return 0
}

// nextEvent returns the registration's next event or fails after 2s.
func nextEvent(t testing.TB, reg *Registration) *StreamEvent {
	t.Helper()
	select {
	case ev := <-reg.Events():
		return ev
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2s")
		return nil
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

func waitLive(t testing.TB, e *Engine, k Kind, want int64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := e.Stats().Kinds[k].Live
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("live %s actors = %d, want %d", k, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSplice runs the whole flow over every mailbox kind: register, dial,
// connect event, callback, pairing, and bytes both ways with half-close.
func TestSplice(t *testing.T) {
	for _, mb := range mailboxSets {
		t.Run(fmt.Sprintf("directory=%s,listener=%s,pending=%s,pair=%s", mb.Directory, mb.Listener, mb.Pending, mb.Pair), func(t *testing.T) {
			e := newEngine(t, Config{Mailboxes: mb})
			ctx := context.Background()
			reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			pd, err := e.Dial(ctx, "svc", "cli", "127.0.0.1:2")
			if err != nil {
				t.Fatal(err)
			}
			ev := nextEvent(t, reg)
			if ev.Type != wire.EventConnect || ev.Connect.Token != pd.Token.String() || ev.Connect.Client != "cli" ||
				ev.Connect.Callback != wire.PathAccept+pd.Token.String() {
				t.Fatalf("event = %+v, want connect for token %s", ev, pd.Token)
			}
			p, err := e.Callback(ctx, pd.Token, reg.ID)
			if err != nil {
				t.Fatal(err)
			}
			o := pd.Wait(ctx)
			if o.Err != nil || o.Pairing != p {
				t.Fatalf("outcome = %+v, want the callback's pairing", o)
			}
			if p.ClientName != "cli" || p.ClientAddr != "127.0.0.1:2" || p.Name != "svc" {
				t.Fatalf("pairing = %+v", p)
			}
			// Relay side of each socket goes to the pairing; the test
			// holds the far ends. Heads are forwarded first.
			clientFar, clientNear := tcpPair(t)
			serverFar, serverNear := tcpPair(t)
			defer clientFar.Close()
			defer serverFar.Close()
			if !p.Offer(Client, clientNear, []byte("early-client|")) || !p.Offer(Server, serverNear, []byte("early-server|")) {
				t.Fatal("offer refused")
			}
			go func() {
				clientFar.Write([]byte("to-server"))
				clientFar.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(serverFar)
			if err != nil || string(got) != "early-client|to-server" {
				t.Fatalf("server read %q, %v", got, err)
			}
			serverFar.Write([]byte("to-client"))
			serverFar.Close()
			got, err = io.ReadAll(clientFar)
			if err != nil || string(got) != "early-server|to-client" {
				t.Fatalf("client read %q, %v", got, err)
			}
			waitLive(t, e, KindPair, 0)
			waitLive(t, e, KindPending, 0)
			st := e.Stats()
			if st.Spliced != 1 || st.BytesToServer != int64(len("early-client|to-server")) || st.BytesToClient != int64(len("early-server|to-client")) {
				t.Fatalf("stats = %+v", st)
			}
			// The token is spent: a replay gets 410.
			if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusGone {
				t.Fatalf("replay: %v, want 410", err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{CallbackTimeout: 200 * time.Millisecond}})
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.Register(ctx, RegisterRequest{Name: "b", ClientAddr: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "y"}); status(err) != http.StatusConflict {
		t.Fatalf("duplicate register: %v, want 409", err)
	}
	if _, err := e.Dial(ctx, "nobody", "", "x"); status(err) != http.StatusNotFound {
		t.Fatalf("dial unknown: %v, want 404", err)
	}
	if _, err := e.Callback(ctx, wire.NewToken(), reg.ID); status(err) != http.StatusNotFound {
		t.Fatalf("random token: %v, want 404", err)
	}
	pd, err := e.Dial(ctx, "a", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, reg)
	if _, err := e.Callback(ctx, pd.Token, other.ID); status(err) != http.StatusForbidden {
		t.Fatalf("foreign registration: %v, want 403", err)
	}
	// The foreign attempt did not spend the token; the deadline does.
	if o := pd.Wait(ctx); status(o.Err) != http.StatusGatewayTimeout {
		t.Fatalf("outcome = %+v, want 504", o)
	}
	if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusGone {
		t.Fatalf("late callback: %v, want 410", err)
	}
	if got := e.Stats(); got.Expired != 1 || got.ForeignToken != 1 {
		t.Fatalf("stats = %+v, want 1 expired, 1 foreign", got)
	}
}

// TestQueueFullIsolated checks that a registration whose stream is not
// drained refuses its own dials with 503 at once, while other names serve.
func TestQueueFullIsolated(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{EventQueue: 2}})
	ctx := context.Background()
	stuck, _ := e.Register(ctx, RegisterRequest{Name: "stuck", ClientAddr: "x"})
	healthy, _ := e.Register(ctx, RegisterRequest{Name: "healthy", ClientAddr: "x"})
	for i := range 2 {
		if _, err := e.Dial(ctx, "stuck", "", "x"); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
	}
	if stuck.Queued() != 2 {
		t.Fatalf("queued = %d, want 2", stuck.Queued())
	}
	for range 5 {
		if _, err := e.Dial(ctx, "stuck", "", "x"); status(err) != http.StatusServiceUnavailable {
			t.Fatalf("dial to full queue: %v, want 503", err)
		}
	}
	pd, err := e.Dial(ctx, "healthy", "", "x")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, healthy); ev.Connect.Token != pd.Token.String() {
		t.Fatalf("healthy got %+v", ev)
	}
	if got := e.Stats().QueueFull; got != 5 {
		t.Fatalf("QueueFull = %d, want 5", got)
	}
}

// TestRegistrationEnd checks that ending a registration answers its
// pending dials at once with 502 and frees the name.
func TestRegistrationEnd(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	pds := make([]*PendingDial, 3)
	for i := range pds {
		pd, err := e.Dial(ctx, "a", "", "x")
		if err != nil {
			t.Fatal(err)
		}
		pds[i] = pd
	}
	reg.Close()
	for i, pd := range pds {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		o := pd.Wait(wctx)
		cancel()
		if status(o.Err) != http.StatusBadGateway {
			t.Fatalf("pending %d: %+v, want 502", i, o)
		}
	}
	select {
	case <-reg.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed")
	}
	waitLive(t, e, KindListener, 0)
	waitLive(t, e, KindPending, 0)
	if _, err := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"}); err != nil {
		t.Fatalf("re-register after end: %v", err)
	}
}

// TestCancel checks that a dial whose client went away spends its token.
func TestCancel(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	pd, _ := e.Dial(ctx, "a", "", "x")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if o := pd.Wait(cctx); status(o.Err) != 499 {
		t.Fatalf("outcome = %+v, want 499 cancelled", o)
	}
	if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusGone {
		t.Fatalf("callback after cancel: %v, want 410", err)
	}
	waitLive(t, e, KindPending, 0)
}

// TestCloseAnswersEverything checks Engine.Close: pending dials get an
// outcome, streams end, pairings and pairs are closed, and nothing leaks.
func TestCloseAnswersEverything(t *testing.T) {
	e, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	pd, _ := e.Dial(ctx, "a", "", "x")
	pd2, _ := e.Dial(ctx, "a", "", "x")
	nextEvent(t, reg)
	p, err := e.Callback(ctx, pd2.Token, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	far, near := tcpPair(t)
	defer far.Close()
	p.Offer(Server, near, nil) // the client side never arrives
	e.Close()
	if o := pd.Wait(ctx); status(o.Err) != http.StatusBadGateway {
		t.Fatalf("outcome after Close = %+v, want 502", o)
	}
	<-reg.Done()
	// The offered conn is reset: its peer had a 101 and must not read a
	// clean end.
	far.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := far.Read(make([]byte, 1)); n != 0 || err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("offered conn after Close: read %d, %v; want a reset", n, err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "b", ClientAddr: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestDrainWithFullQueue checks that a drain reaches a registration whose
// event queue is full: it is a signal, not a queued event.
func TestDrainWithFullQueue(t *testing.T) {
	e := newEngine(t, Config{Limits: Limits{EventQueue: 1}})
	ctx := context.Background()
	reg, _ := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
	if _, err := e.Dial(ctx, "a", "", "x"); err != nil {
		t.Fatal(err)
	}
	if reg.Queued() != 1 {
		t.Fatalf("queued = %d, want 1 (full)", reg.Queued())
	}
	e.Drain("upgrade")
	select {
	case <-reg.Drained():
	case <-time.After(2 * time.Second):
		t.Fatal("drain lost with a full queue")
	}
	if reg.DrainReason() != "upgrade" {
		t.Fatalf("reason = %q", reg.DrainReason())
	}
	if _, err := e.Dial(ctx, "a", "", "x"); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("dial while draining: %v, want 503", err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "b", ClientAddr: "x"}); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("register while draining: %v, want 503", err)
	}
}

// TestCallbackAfterUnregister checks that a callback racing the end of its
// registration is answered at once (410), never left to the reply bound.
func TestCallbackAfterUnregister(t *testing.T) {
	e := newEngine(t, Config{})
	ctx := context.Background()
	for i := range 50 {
		reg, err := e.Register(ctx, RegisterRequest{Name: "a", ClientAddr: "x"})
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		pd, _ := e.Dial(ctx, "a", "", "x")
		reg.Close()
		// Left to the reply bound, the callback would be refused 503
		// (relay busy), which the switch below fails.
		p, err := e.Callback(ctx, pd.Token, reg.ID)
		o := pd.Wait(ctx)
		switch {
		case err == nil && o.Pairing == p:
			// The callback won the race before the listener closed.
			p.Abort(Server)
		case status(err) == http.StatusGone && status(o.Err) == http.StatusBadGateway:
		default:
			t.Fatalf("round %d: callback %v, outcome %+v", i, err, o)
		}
		waitLive(t, e, KindListener, 0)
	}
}

// TestCloseWaitsForNewPairs is the regression test for a race between
// Close and a pair spawned just before it: the pumps were counted when
// the pair actor started them, which could be after Close had begun to
// Wait. Under -race the old code failed within a few hundred rounds
// ("WaitGroup is reused before previous Wait has returned", or a race
// between Add and Wait); now every pump is counted before the spawn.
func TestCloseWaitsForNewPairs(t *testing.T) {
	const rounds = 200
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < rounds && time.Now().Before(deadline); i++ {
		e, err := NewEngine(Config{})
		if err != nil {
			t.Fatal(err)
		}
		clientFar, serverFar := livePairMaybe(t, e, "race") // spawns the pair
		e.Close()                                           // at once: the pair may not have started
		// After Close, the pumps are done and both far ends read the cut.
		for _, c := range []net.Conn{clientFar, serverFar} {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatalf("round %d: read data from a pair cut by Close", i)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round %d: pair still open 5s after Close returned", i)
			}
			c.Close()
		}
	}
}

// TestBoundedMailboxesUnderLoad floods a tiny bounded mailbox with dials
// that their listener refuses, each refusal a message back to the
// directory while the directory is busy. Run inline, a full directory
// mailbox would spin the very goroutine that drains it; two bounded
// mailboxes (which Validate refuses) would spin on each other. Every dial
// must be answered, within a bound, with its status counted.
func TestBoundedMailboxesUnderLoad(t *testing.T) {
	tiny := Mailbox{Kind: MailboxBounded, Size: 2}
	for _, mb := range []Mailboxes{{Directory: tiny}, {Listener: tiny}, {Pending: tiny}, {Pair: tiny}} {
		t.Run(fmt.Sprintf("directory=%s,listener=%s,pending=%s,pair=%s", mb.Directory, mb.Listener, mb.Pending, mb.Pair), func(t *testing.T) {
			e, err := NewEngine(Config{Mailboxes: mb, Limits: Limits{EventQueue: 1}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := e.Register(ctx, RegisterRequest{Name: "stuck", ClientAddr: "x"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Dial(ctx, "stuck", "", "x"); err != nil {
				t.Fatal(err) // fills the queue of 1: every later dial is refused
			}
			const loops, dials = 32, 50
			refused := make(chan int, loops)
			for range loops {
				go func() {
					n := 0
					for range dials {
						if _, err := e.Dial(ctx, "stuck", "", "x"); status(err) == http.StatusServiceUnavailable {
							n++
						}
					}
					refused <- n
				}()
			}
			total := 0
			deadline := time.After(20 * time.Second)
			for i := range loops {
				select {
				case n := <-refused:
					total += n
				case <-deadline:
					// The loops are stuck in the engine: Close would be
					// too, so the test ends the binary here.
					panic(fmt.Sprintf("%d of %d dial loops still in the engine after 20s", loops-i, loops))
				}
			}
			if total != loops*dials {
				t.Fatalf("%d dials refused 503, want all %d", total, loops*dials)
			}
			e.Close()
		})
	}
}

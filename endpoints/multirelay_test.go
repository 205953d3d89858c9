package endpoints_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// The tests of relay address lists: several independent relays on
// loopback, each a relaynode.Node of its own (no cluster: a name lives at
// the relays its listener registered at).

// fastBackoff makes a listener come back within tens of milliseconds.
var fastBackoff = endpoints.WithBackoff(10*time.Millisecond, 100*time.Millisecond)

// startRelays starts n independent relays.
func startRelays(t *testing.T, n int) []*relaytest.Relay {
	t.Helper()
	rs := make([]*relaytest.Relay, n)
	for i := range rs {
		rs[i] = relaytest.Start(t, relaynode.Config{})
	}
	return rs
}

// relayList joins the relays' URLs with commas.
func relayList(rs ...*relaytest.Relay) string {
	urls := make([]string, len(rs))
	for i, r := range rs {
		urls[i] = r.URL
	}
	return strings.Join(urls, ",")
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// pingVia pings serverName through the relay at addr alone.
func pingVia(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	return relaytest.Ping(ctx, endpoints.NewRelayDialer(addr, clientName), serverName)
}

// registered reports whether the listener holds a live, not draining,
// registration at relay i of its list.
func registered(ln net.Listener, i int) bool {
	st := ln.(*endpoints.Listener).State()
	return st.Relays[i].Registered && !st.Relays[i].Draining
}

// TestRelayListBad checks that every entry of a list is checked before
// anything is dialed: an empty entry, a bad one or a repeated one is
// ErrBadRelayAddress naming it, for dialers and listeners alike; and that
// WithRedundancy below 1 is ErrBadRedundancy.
func TestRelayListBad(t *testing.T) {
	for _, c := range []struct{ list, names string }{
		{"127.0.0.1:1,", "entry 2 of 2 is empty"},
		{",127.0.0.1:1", "entry 1 of 2 is empty"},
		{"127.0.0.1:1, ,127.0.0.1:2", "entry 2 of 3 is empty"},
		{"127.0.0.1:1,127.0.0.1:1", `"127.0.0.1:1": entry 2 of 2 repeats entry 1`},
		{"http://127.0.0.1:80,127.0.0.1:80", `entry 2 of 2 repeats entry 1`},
		{"https://h:443,https://h", `"https://h": entry 2 of 2 repeats entry 1`},
		{"127.0.0.1:1,ftp://127.0.0.1:2", `entry 2 of 2: bad relay address "ftp://127.0.0.1:2"`},
		{"127.0.0.1:1,127.0.0.1:0", `entry 2 of 2: bad relay address "127.0.0.1:0"`},
		{"http://127.0.0.1:1/v1,127.0.0.1:2", `entry 1 of 2: bad relay address "http://127.0.0.1:1/v1"`},
	} {
		t.Run(c.list, func(t *testing.T) {
			_, err := endpoints.DialTCP("tcp", "svc", c.list, "")
			if !errors.Is(err, endpoints.ErrBadRelayAddress) || !strings.Contains(err.Error(), c.names) {
				t.Errorf("dial via %q: %v, want ErrBadRelayAddress with %q", c.list, err, c.names)
			}
			_, err = endpoints.ListenRelay("tcp", "svc", c.list)
			if !errors.Is(err, endpoints.ErrBadRelayAddress) || !strings.Contains(err.Error(), c.names) {
				t.Errorf("listen on %q: %v, want ErrBadRelayAddress with %q", c.list, err, c.names)
			}
		})
	}
	r := relaytest.Start(t, relaynode.Config{})
	for _, n := range []int{0, -1} {
		_, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithRedundancy(n))
		if !errors.Is(err, endpoints.ErrBadRedundancy) || !strings.Contains(err.Error(), fmt.Sprintf("WithRedundancy(%d)", n)) {
			t.Errorf("WithRedundancy(%d): %v, want ErrBadRedundancy naming it", n, err)
		}
	}
	if st := r.Node.Stats(); st.Registrations != 0 {
		t.Errorf("relay holds %d registrations after refused listens, want 0", st.Registrations)
	}
}

// TestListenListFirstUp checks that Listen registers at the first listed
// relay that accepts, after one that is down, and that the state names
// both: the dead one with its error, the live one registered.
func TestListenListFirstUp(t *testing.T) {
	rs := startRelays(t, 1)
	dead := deadAddr(t)
	ln, err := endpoints.ListenRelay("tcp", serverName, dead+","+rs[0].URL, fastBackoff)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	relaytest.ServeEcho(t, ln)
	if err := pingVia(rs[0].Addr); err != nil {
		t.Fatalf("ping: %v", err)
	}
	st := ln.(*endpoints.Listener).State()
	if !st.Connected || st.Registrations != 1 || st.Redundancy != 1 || len(st.Relays) != 2 {
		t.Fatalf("state %+v, want connected with 1 registration of 1, 2 relays", st)
	}
	if r := st.Relays[0]; r.Registered || r.Failures != 1 || !errors.Is(r.LastError, syscall.ECONNREFUSED) || r.Relay != "http://"+dead {
		t.Errorf("dead relay state %+v, want 1 failure, ECONNREFUSED", r)
	}
	if r := st.Relays[1]; !r.Registered || r.Relay != rs[0].URL {
		t.Errorf("live relay state %+v, want registered", r)
	}
	if got := ln.Addr().String(); got != serverName+"@"+rs[0].Addr {
		t.Errorf("Addr %q, want %s@%s", got, serverName, rs[0].Addr)
	}
}

// TestListenListAllDown checks Listen's error when no relay of the list
// is up: one error per relay, joined, each naming its relay.
func TestListenListAllDown(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	_, err := endpoints.ListenRelay("tcp", serverName, a+","+b)
	if err == nil {
		t.Fatal("listen succeeded with no relay up")
	}
	msg := err.Error()
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(msg, "relay http://"+a+": ") ||
		!strings.Contains(msg, "relay http://"+b+": ") || !strings.HasPrefix(msg, `endpoints: listen "echo": `) {
		t.Errorf("listen error %q, want ECONNREFUSED from each relay, named", msg)
	}
}

// TestListenerMovesOnClose checks that a listener whose relay dies moves to
// the next relay of its list and is reachable there, while its accept
// loop goes on unbroken.
func TestListenerMovesOnClose(t *testing.T) {
	rs := startRelays(t, 2)
	var (
		mu     sync.Mutex
		states []endpoints.ListenerState
	)
	onState := endpoints.WithStateFunc(func(s endpoints.ListenerState) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	})
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff, onState)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	if err := pingVia(rs[0].Addr); err != nil {
		t.Fatalf("ping via the first relay: %v", err)
	}
	if registered(ln, 1) {
		t.Fatal("registered at the second relay before the first died")
	}
	closed := time.Now()
	rs[0].Close()
	relaytest.Eventually(t, ioTimeout, func() bool { return registered(ln, 1) }, "listener never moved to the second relay")
	if err := pingVia(rs[1].Addr); err != nil {
		t.Fatalf("ping via the second relay after the move: %v", err)
	}
	t.Logf("from close to a ping through the next relay: %v (for the report, not asserted)", time.Since(closed))
	st := ln.(*endpoints.Listener).State()
	if !st.Connected || st.Reconnects != 1 || st.Relays[0].Registered || !errors.Is(st.Relays[0].LastError, endpoints.ErrStreamEnded) {
		t.Errorf("state %+v, want connected, 1 reconnect, first relay's stream ended", st)
	}
	if got, errs := srv.Accepted(), srv.AcceptErrs(); got != 2 || len(errs) != 0 {
		t.Errorf("accepted %d with errors %v, want 2, none", got, errs)
	}
	// The WithStateFunc saw the move in order: the stream at the first
	// relay down, the registration retrying, then up at the second.
	mu.Lock()
	defer mu.Unlock()
	var seq []string
	for _, s := range states {
		seq = append(seq, fmt.Sprintf("connected=%v retrying=%d at0=%v at1=%v", s.Connected, s.Retrying, s.Relays[0].Registered, s.Relays[1].Registered))
	}
	want := []string{
		"connected=false retrying=0 at0=false at1=false",
		"connected=false retrying=1 at0=false at1=false",
		"connected=true retrying=0 at0=false at1=true",
	}
	if strings.Join(seq, "; ") != strings.Join(want, "; ") {
		t.Errorf("state changes:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
}

// TestListenerMovesOnDrain checks that a listener moves on its relay's
// drain event, at once, to the next relay, while the connection it
// accepted through the draining relay goes on carrying bytes; the drain
// ends when that connection does.
func TestListenerMovesOnDrain(t *testing.T) {
	rs := startRelays(t, 2)
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	relaytest.ServeEcho(t, ln)
	old, err := endpoints.DialTCP("tcp", serverName, rs[0].Addr, clientName)
	if err != nil {
		t.Fatalf("dial via the first relay: %v", err)
	}
	defer old.Close()
	flow := relaytest.StartFlow(old)
	flow.WaitEchoed(t, 1<<10, ioTimeout)
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*ioTimeout)
		defer cancel()
		shutdown <- rs[0].Node.Shutdown(ctx)
	}()
	relaytest.Eventually(t, ioTimeout, func() bool { return registered(ln, 1) }, "listener never moved to the second relay")
	if err := pingVia(rs[1].Addr); err != nil {
		t.Fatalf("ping via the second relay: %v", err)
	}
	// The pair through the draining relay is still up and echoing.
	before := flow.Echoed()
	flow.WaitEchoed(t, before+1<<10, ioTimeout)
	select {
	case err := <-shutdown:
		t.Fatalf("drain ended (%v) while a pair through it was live", err)
	default:
	}
	old.Close()
	<-flow.Done()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(2 * ioTimeout):
		t.Fatal("drain never ended after the last pair closed")
	}
	if st := ln.(*endpoints.Listener).State(); !st.Connected || st.Registrations != 1 || st.Relays[0].Registered {
		t.Errorf("state %+v, want one registration, at the second relay", st)
	}
}

// TestRedundancyNoLostDial checks WithRedundancy(2) over three relays: the
// listener holds two registrations; a relay is closed in the middle of a
// bounded run of dials through a dialer given the same list, and not one
// dial fails; the lost registration moves to the third relay.
func TestRedundancyNoLostDial(t *testing.T) {
	rs := startRelays(t, 3)
	list := relayList(rs...)
	ln, err := endpoints.ListenRelay("tcp", serverName, list, fastBackoff,
		endpoints.WithRedundancy(2), endpoints.WithWarmPool(1))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	rl := ln.(*endpoints.Listener)
	if st := rl.State(); st.Registrations != 2 || st.Redundancy != 2 || !st.Relays[0].Registered || !st.Relays[1].Registered || st.Relays[2].Registered {
		t.Fatalf("state after Listen %+v, want registrations at the first two relays", st)
	}
	// Each registration keeps its own warm pool.
	relaytest.Eventually(t, ioTimeout, func() bool {
		return rs[0].Node.Stats().Parked == 1 && rs[1].Node.Stats().Parked == 1 && rs[2].Node.Stats().Parked == 0
	}, "warm pool not parked at each registration's relay")
	d := endpoints.NewRelayDialer(rs[0].URL+","+rs[1].URL, clientName)
	n := scaled(200, 60)
	failed := 0
	for i := range n {
		if i == n/3 {
			rs[0].Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		if err := relaytest.Ping(ctx, d, serverName); err != nil {
			failed++
			t.Logf("dial %d: %v", i, err)
		}
		cancel()
	}
	if failed != 0 {
		t.Errorf("%d of %d dials failed with one of two relays closed, want 0", failed, n)
	}
	relaytest.Eventually(t, ioTimeout, func() bool { return registered(ln, 2) }, "lost registration never moved to the third relay")
	if err := pingVia(rs[2].Addr); err != nil {
		t.Errorf("ping via the third relay: %v", err)
	}
	relaytest.Eventually(t, ioTimeout, func() bool {
		return rs[1].Node.Stats().Parked == 1 && rs[2].Node.Stats().Parked == 1
	}, "warm pool not parked at the third relay after the move")
	if st := rl.State(); st.Registrations != 2 || st.Relays[0].Registered || st.Reconnects != 1 {
		t.Errorf("state %+v, want 2 registrations, none at the closed relay, 1 reconnect", st)
	}
	if got := srv.Accepted(); got != int64(n)+1 {
		t.Errorf("accepted %d, want %d", got, n+1)
	}
}

// TestListenerAllDown checks the listener when every relay of its list is
// down: it keeps trying each in turn, Accept blocks, State says so, and
// Close still returns; when a relay comes back on its address, the
// listener registers there and is reachable.
func TestListenerAllDown(t *testing.T) {
	rs := startRelays(t, 2)
	addr0 := rs[0].Addr
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	rs[0].Close()
	rs[1].Close()
	rl := ln.(*endpoints.Listener)
	relaytest.Eventually(t, ioTimeout, func() bool {
		st := rl.State()
		return st.Relays[0].Failures >= 2 && st.Relays[1].Failures >= 2
	}, "listener did not keep trying both relays")
	st := rl.State()
	if st.Connected || st.Registrations != 0 || st.Retrying != 1 || !errors.Is(st.LastError, syscall.ECONNREFUSED) {
		t.Errorf("state with every relay down %+v, want not connected, retrying 1, ECONNREFUSED", st)
	}
	if got, errs := srv.Accepted(), srv.AcceptErrs(); got != 0 || len(errs) != 0 {
		t.Errorf("accept loop: %d accepted, errors %v; want none, no error", got, errs)
	}
	// The first relay comes back on its address.
	lnBack, err := net.Listen("tcp", addr0)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr0, err)
	}
	back := relaytest.StartOn(t, relaynode.Config{}, lnBack)
	relaytest.Eventually(t, ioTimeout, func() bool { return registered(ln, 0) }, "listener never came back")
	if err := pingVia(back.Addr); err != nil {
		t.Errorf("ping after the relay came back: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- ln.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Close hung")
	}
}

// TestListenerAllDownClose checks that Accept blocks while every relay is
// down, and that Close ends it at once with net.ErrClosed.
func TestListenerAllDownClose(t *testing.T) {
	rs := startRelays(t, 2)
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	rs[0].Close()
	rs[1].Close()
	rl := ln.(*endpoints.Listener)
	relaytest.Eventually(t, ioTimeout, func() bool {
		st := rl.State()
		return st.Relays[0].Failures >= 3 && st.Relays[1].Failures >= 3
	}, "listener did not keep trying")
	select {
	case err := <-accepted:
		t.Fatalf("Accept returned %v while every relay was down", err)
	default:
	}
	closed := make(chan struct{})
	go func() { ln.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("Close hung with every relay down")
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestDialerFailover checks that a dialer given a dead address and a live
// one reaches the server on every dial, whichever address the dial starts
// at, and that with every address dead the error joins one error per
// address, each naming its relay.
func TestDialerFailover(t *testing.T) {
	rs := startRelays(t, 1)
	ln, err := endpoints.ListenRelay("tcp", serverName, rs[0].URL)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	dead := deadAddr(t)
	d := endpoints.NewRelayDialer(dead+","+rs[0].Addr, clientName)
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		if err := relaytest.Ping(ctx, d, serverName); err != nil {
			t.Errorf("dial %d: %v", i, err)
		}
		cancel()
	}
	if got := srv.Accepted(); got != 6 {
		t.Errorf("accepted %d, want 6", got)
	}
	dead2 := deadAddr(t)
	_, err = endpoints.DialTCP("tcp", serverName, dead+","+dead2, clientName)
	msg := fmt.Sprint(err)
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.HasPrefix(msg, `endpoints: dial "echo": `) ||
		!strings.Contains(msg, "relay http://"+dead+": ") || !strings.Contains(msg, "relay http://"+dead2+": ") {
		t.Errorf("dial with every relay dead: %q, want ECONNREFUSED from each, named", msg)
	}
}

// TestDialerFailoverContext checks that a dial over dead addresses stops at
// its context's deadline: an address that takes the connection and never
// answers is not waited out past it, and the rest are not tried.
func TestDialerFailoverContext(t *testing.T) {
	var tried atomic.Int64
	silent := startHostile(t, func(c net.Conn, _ *http.Request) { tried.Add(1); silence(c) })
	second := startHostile(t, func(c net.Conn, _ *http.Request) { tried.Add(100) })
	d := endpoints.NewRelayDialer(silent.addr+","+second.addr, clientName)
	ctx, cancel := context.WithTimeout(context.Background(), hostileTimeout)
	defer cancel()
	_, err := d.DialContext(ctx, "tcp", serverName)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "relay http://"+silent.addr) {
		t.Errorf("dial: %v, want DeadlineExceeded naming the silent relay", err)
	}
	relaytest.Eventually(t, ioTimeout, func() bool { return tried.Load() == 1 }, "silent relay never saw the dial")
	if got := tried.Load(); got != 1 {
		t.Errorf("tried %d, want the silent relay only (1)", got)
	}
}

// TestDialerFailoverStatus checks, per refusal, whether a dialer moves on
// to the next address: on the refusals of one node (429, 5xx but 504, an
// answer that is not a relay's) it does; on an answer every node would
// give (400, 403, 404, 409, 504) it stops, with that refusal.
func TestDialerFailoverStatus(t *testing.T) {
	rs := startRelays(t, 1)
	ln, err := endpoints.ListenRelay("tcp", serverName, rs[0].URL)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	var want int64
	for _, c := range []struct {
		status int
		node   bool // the answer has Relay-Node: it is a relay's
		next   bool
	}{
		{http.StatusServiceUnavailable, true, true},
		{http.StatusTooManyRequests, true, true},
		{http.StatusBadGateway, true, true},
		{http.StatusInternalServerError, true, true},
		{http.StatusBadGateway, false, true},
		{http.StatusNotFound, false, true},
		{http.StatusNotFound, true, false},
		{http.StatusForbidden, true, false},
		{http.StatusBadRequest, true, false},
		{http.StatusConflict, true, false},
		{http.StatusGatewayTimeout, true, false},
	} {
		t.Run(fmt.Sprintf("%d-node-%v", c.status, c.node), func(t *testing.T) {
			head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: 6\r\nConnection: close\r\n", c.status, http.StatusText(c.status))
			if c.node {
				head += wire.HeaderNode + ": fake\r\n"
			}
			h := startHostile(t, func(conn net.Conn, _ *http.Request) { io.WriteString(conn, head+"\r\nreason") })
			d := endpoints.NewRelayDialer(h.addr+","+rs[0].Addr, clientName)
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			err := relaytest.Ping(ctx, d, serverName)
			var re *endpoints.RelayError
			switch {
			case c.next && err != nil:
				t.Errorf("dial after a %d: %v, want the next relay's connection", c.status, err)
			case c.next:
				want++
			case !errors.As(err, &re) || re.Status != c.status || re.Reason != "reason" || strings.Contains(err.Error(), rs[0].Addr):
				t.Errorf("dial after a %d: %v, want that refusal alone", c.status, err)
			}
			if got := srv.Accepted(); got != want {
				t.Errorf("accepted %d, want %d", got, want)
			}
		})
	}
}

// TestDialerRotates checks that a dialer's dials start at each address in
// turn: with a name registered at one relay of two only, every other dial
// gets that relay's 404 from the other, which is final (in a cluster a 404
// is every node's answer), and every other dial succeeds.
func TestDialerRotates(t *testing.T) {
	rs := startRelays(t, 2)
	ln, err := endpoints.ListenRelay("tcp", serverName, rs[1].URL)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	srv := relaytest.ServeEcho(t, ln)
	d := endpoints.NewRelayDialer(relayList(rs...), clientName)
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		err := relaytest.Ping(ctx, d, serverName)
		cancel()
		var re *endpoints.RelayError
		if i%2 == 0 {
			if !errors.As(err, &re) || re.Status != http.StatusNotFound {
				t.Errorf("dial %d (starts at the first relay): %v, want its 404", i, err)
			}
		} else if err != nil {
			t.Errorf("dial %d (starts at the second relay): %v", i, err)
		}
	}
	if got := srv.Accepted(); got != 3 {
		t.Errorf("accepted %d, want 3", got)
	}
}

// TestMTLSRelayList checks the MTLS listener and dialer with a relay
// list: ListenMTLS with WithRedundancy(2) over two relays, the first
// closed, and DialMTLS given both: the handshake end to end completes
// through the second, and the bytes come back exact.
func TestMTLSRelayList(t *testing.T) {
	rs := startRelays(t, 2)
	pki := sharedPKI(t)
	ln, err := endpoints.ListenMTLS("tcp", serverName, pki.serverConfig(), relayList(rs...),
		fastBackoff, endpoints.WithRedundancy(2))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	relaytest.ServeEcho(t, ln)
	if st := ln.(*endpoints.Listener).State(); st.Registrations != 2 {
		t.Fatalf("state %+v, want 2 registrations", st)
	}
	rs[0].Close()
	for i := range 4 {
		c, err := endpoints.DialMTLS("tcp", serverName, pki.clientConfig(), rs[0].Addr+","+rs[1].Addr, clientName)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		msg := fmt.Sprintf("hello %d", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatalf("close write: %v", err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != msg {
			t.Errorf("dial %d: echo %q, %v; want %q", i, got, err, msg)
		}
	}
}

// TestRedundancyConcurrentDials closes one relay of two while several
// goroutines dial in a bounded loop through a dialer given both, to a
// listener registered at both (WithRedundancy(2)): no dial fails. A pair
// already made through the closed relay is cut with it, which is not a
// lost dial; those are counted and logged apart.
func TestRedundancyConcurrentDials(t *testing.T) {
	rs := startRelays(t, 2)
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff, endpoints.WithRedundancy(2))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	relaytest.ServeEcho(t, ln)
	d := endpoints.NewRelayDialer(rs[0].Addr+","+rs[1].Addr, clientName)
	const workers = 4
	n := scaled(100, 30)
	var (
		dialed, dialFailed, cut atomic.Int64
		wg                      sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if w == 0 && i == n/3 {
					rs[0].Close()
				}
				ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
				c, err := d.DialContext(ctx, "tcp", serverName)
				cancel()
				if err != nil {
					dialFailed.Add(1)
					t.Logf("dial: %v", err)
					continue
				}
				dialed.Add(1)
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				_, err = io.WriteString(c, "ping")
				if err == nil {
					err = c.(*endpoints.Conn).CloseWrite()
				}
				var got []byte
				if err == nil {
					got, err = io.ReadAll(c)
				}
				c.Close()
				if err != nil || string(got) != "ping" {
					cut.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := dialFailed.Load(); got != 0 {
		t.Errorf("%d of %d dials failed with one of two relays closed, want 0", got, workers*n)
	}
	if got := dialed.Load(); got != int64(workers*n) {
		t.Errorf("dialed %d, want %d", got, workers*n)
	}
	t.Logf("%d dials, %d pairs cut by the close (made through the closed relay before it went)", dialed.Load(), cut.Load())
}

// TestRedundancyPermanentRefusal checks that a permanent refusal ends the
// one registration it answers: with the name held by someone else at the
// second relay, WithRedundancy(2) gets one registration, at the first,
// reports the 409 for the second and does not retry it; when the first
// relay goes, the move to the second is refused 409 too, and that, the
// last registration, ends the listener: Accept returns the refusal.
func TestRedundancyPermanentRefusal(t *testing.T) {
	rs := startRelays(t, 2)
	holder, a := relaytest.Listen(nil, rs[1].Addr, serverName, ioTimeout)
	if holder == nil {
		t.Fatalf("hold the name at the second relay: %v", a)
	}
	defer holder.Close()
	ln, err := endpoints.ListenRelay("tcp", serverName, relayList(rs...), fastBackoff, endpoints.WithRedundancy(5))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	rl := ln.(*endpoints.Listener)
	st := rl.State()
	var re *endpoints.RelayError
	if st.Redundancy != 2 || st.Registrations != 1 || st.Retrying != 0 || !st.Relays[0].Registered ||
		!errors.As(st.Relays[1].LastError, &re) || re.Status != http.StatusConflict {
		t.Fatalf("state %+v, want redundancy 2 (capped), 1 registration, the second relay's 409, no retry", st)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			relaytest.Echo(c)
			c.Close()
		}
		accepted <- err
	}()
	if err := pingVia(rs[0].Addr); err != nil {
		t.Fatalf("ping via the first relay: %v", err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
	rs[0].Close()
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if !errors.As(err, &re) || re.Status != http.StatusConflict {
			t.Errorf("accept after the last registration was refused: %v, want the 409", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("listener did not end after its last registration was refused")
	}
	if got := rl.State(); got.Connected || got.Registrations != 0 || got.Retrying != 0 {
		t.Errorf("state %+v, want nothing up, nothing retrying", got)
	}
}

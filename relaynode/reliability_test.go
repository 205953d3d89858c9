package relaynode_test

// Reliability checks of the design's matrix (DESIGN.md §7): C1 relay
// restarts, C2 graceful shutdown, C4 faults mid-transfer, D7 a blackholed
// registration stream, and the opt-in H4 soak. Each reports its figures with
// t.Logf; run with -v to see them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

var soak = flag.Duration("soak", 0, "run TestSoak for this long")

// soakProfile, when set, makes TestSoak write a heap profile at every
// sample, as PREFIX-NNN.pprof, to compare with go tool pprof -base.
var soakTombstones = flag.Int("soak.tombstones", 0, "TestSoak's relay Config.Tombstones (0: default)")

var soakProfile = flag.String("soak.heapprofile", "", "write TestSoak's heap profiles as `PREFIX`-NNN.pprof")

// stater is what a relay listener exposes of its registration.
type stater interface {
	State() endpoints.ListenerState
}

// leakCheck fails the test if a goroutine started during it is still alive
// once its other cleanups have run. Call it first.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// acceptLoop accepts on ln and runs handle for each conn, recording every
// error Accept returns other than the net.ErrClosed of stop.
type acceptLoop struct {
	ln       net.Listener
	wg       sync.WaitGroup
	stopping atomic.Bool
	accepted atomic.Int64

	mu    sync.Mutex // guards the following
	errs  []error
	conns map[net.Conn]struct{}
}

// serveLoop starts an accept loop on ln, stopped in cleanup.
func serveLoop(t testing.TB, ln net.Listener, handle func(net.Conn)) *acceptLoop {
	t.Helper()
	a := &acceptLoop{ln: ln, conns: make(map[net.Conn]struct{})}
	a.wg.Add(1)
	go a.run(handle)
	t.Cleanup(a.stop)
	return a
}

func (a *acceptLoop) run(handle func(net.Conn)) {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			if !a.stopping.Load() || !errors.Is(err, net.ErrClosed) {
				a.mu.Lock()
				a.errs = append(a.errs, err)
				a.mu.Unlock()
			}
			return
		}
		a.accepted.Add(1)
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				c.Close()
				a.mu.Lock()
				delete(a.conns, c)
				a.mu.Unlock()
			}()
			handle(c)
		}()
	}
}

// stop closes the listener and the conns still being handled, and waits for
// every handler. It is safe to call twice.
func (a *acceptLoop) stop() {
	a.stopping.Store(true)
	a.ln.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// acceptErrs returns the errors Accept returned before stop.
func (a *acceptLoop) acceptErrs() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.errs)
}

func halfClose(c net.Conn) error {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("%T has no CloseWrite", c)
	}
	return cw.CloseWrite()
}

// echoBack copies c back to itself and half-closes it at EOF.
func echoBack(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(c, c); err == nil {
		_ = halfClose(c)
	}
}

// chachaBytes returns n bytes of ChaCha8 output for seed.
func chachaBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// pingName dials name, echoes a few bytes and checks them, all within ctx.
func pingName(ctx context.Context, d *endpoints.RelayDialer, name string) error {
	c, err := d.DialContext(ctx, "tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	if err := halfClose(c); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != "ping" {
		return fmt.Errorf("echo %q, want %q", got, "ping")
	}
	return nil
}

// pollPingName pings name until it succeeds or bound passes, each attempt
// bounded by a second. It returns the attempts made and the last error.
func pollPingName(d *endpoints.RelayDialer, name string, bound time.Duration) (int, error) {
	deadline := time.Now().Add(bound)
	for attempts := 1; ; attempts++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := pingName(ctx, d, name)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return attempts, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialRetry dials name until it succeeds or bound passes. Under load, a
// listener may find its stream dead a moment after a successful dial, and
// dials on the registration it replaces are answered 502: a retry is what
// an application does.
func dialRetry(t testing.TB, d *endpoints.RelayDialer, name string, bound time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := d.DialContext(ctx, "tcp", name)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dial to %q succeeded within %v: %v", name, bound, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeLoopbackAddr returns a loopback address that was free a moment ago.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func medianMax(ds []time.Duration) (median, maximum time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// TestRelayRestart is C1 in process: a relay on a fixed port is closed
// mid-stream and started again 20 times. The listener must come back each
// time by itself, and Accept must never fail.
func TestRelayRestart(t *testing.T) {
	leakCheck(t)
	const cycles = 20
	addr := freeLoopbackAddr(t)
	var stop func() // closes the running relay and waits for its Serve
	t.Cleanup(func() {
		if stop != nil {
			stop()
		}
	})
	startRelay := func() {
		t.Helper()
		node, err := relaynode.New(relaynode.Config{Heartbeat: 100 * time.Millisecond, Logger: relaytest.Logger(t, slog.LevelWarn)})
		if err != nil {
			t.Fatal(err)
		}
		var ln net.Listener
		relaytest.Eventually(t, 5*time.Second, func() bool {
			ln, err = net.Listen("tcp", addr)
			return err == nil
		}, "cannot listen on "+addr+" again")
		served := make(chan error, 1)
		go func() { served <- node.Serve(ln) }()
		stop = func() {
			stop = nil
			node.Close()
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		}
	}

	t0 := time.Now()
	startRelay()
	ln, err := endpoints.ListenRelay("tcp", "c1", "http://"+addr, endpoints.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	loop := serveLoop(t, ln, echoBack)
	d := endpoints.NewRelayDialer(addr, "c1-client")
	var took []time.Duration
	for i := range cycles {
		if i > 0 {
			t0 = time.Now()
			startRelay()
		}
		attempts, err := pollPingName(d, "c1", 10*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: no successful dial within 10s of the restart (%d attempts): %v", i, attempts, err)
		}
		took = append(took, time.Since(t0))

		c := dialRetry(t, d, "c1", 10*time.Second)
		f := relaytest.StartFlow(c)
		f.WaitEchoed(t, 256<<10, 10*time.Second)
		stop() // killed mid-stream
		err = f.Wait(t, 10*time.Second)
		t.Logf("cycle %2d: restart→first dial %v (%d attempts); transfer cut after %d bytes echoed: %v", i, took[i].Round(time.Millisecond), attempts, f.Echoed(), err)
	}
	if errs := loop.acceptErrs(); len(errs) > 0 {
		t.Errorf("Accept returned errors across restarts: %v", errs)
	}
	st := ln.(stater).State()
	if st.Reconnects < cycles-1 {
		t.Errorf("State().Reconnects = %d, want >= %d", st.Reconnects, cycles-1)
	}
	med, mx := medianMax(took)
	t.Logf("C1 in-process: %d cycles, restart→first successful dial median %v max %v; listener reconnects %d, callbacks failed %d",
		cycles, med.Round(time.Millisecond), mx.Round(time.Millisecond), st.Reconnects, ln.(interface{ Failed() int64 }).Failed())
}

// TestShutdownDrain is C2: Shutdown with pairs mid-transfer. Pairs that
// finish within the grace period are byte-exact; endless pairs are cut at
// its end; new dials meanwhile are refused.
func TestShutdownDrain(t *testing.T) {
	t.Run("finishing and endless pairs", func(t *testing.T) { testShutdown(t, 3) })
	t.Run("finishing pairs only", func(t *testing.T) { testShutdown(t, 0) })
}

// transferEnd is how one end of a transfer ended.
type transferEnd struct {
	kind byte // 'F' finishing, 'E' endless
	n    int64
	sum  [sha256.Size]byte
	err  error
	at   time.Time
}

func testShutdown(t *testing.T, endless int) {
	leakCheck(t)
	const (
		finishing = 3
		size      = 4 << 20
		piece     = 128 << 10
		grace     = 1500 * time.Millisecond
		slack     = 2 * time.Second
	)
	r := relaytest.Start(t, relaynode.Config{})
	ln, err := endpoints.ListenRelay("tcp", "c2", r.URL, endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st := ln.(stater)
	total := finishing + endless
	serverEnds := make(chan transferEnd, total)
	serveLoop(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		var kind [1]byte
		if _, err := io.ReadFull(c, kind[:]); err != nil {
			serverEnds <- transferEnd{err: err, at: time.Now()}
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		e := transferEnd{kind: kind[0], n: n, err: err, at: time.Now()}
		h.Sum(e.sum[:0])
		if err == nil {
			if _, err := c.Write(e.sum[:]); err == nil {
				_ = halfClose(c)
			}
		}
		serverEnds <- e
	})

	d := endpoints.NewRelayDialer(r.Addr, "c2-client")
	clientEnds := make(chan transferEnd, total)
	started := make(chan struct{}, total)
	resume := make(chan struct{}) // closed once Shutdown has begun
	resumeNow := sync.OnceFunc(func() { close(resume) })
	var clients sync.WaitGroup
	for i := range total {
		kind := byte('F')
		if i >= finishing {
			kind = 'E'
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(ctx, "tcp", "c2")
		cancel()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		clients.Add(1)
		go func() {
			defer clients.Done()
			defer c.Close()
			if _, err := c.Write([]byte{kind}); err != nil {
				started <- struct{}{}
				clientEnds <- transferEnd{kind: kind, err: err, at: time.Now()}
				return
			}
			if kind == 'E' {
				f := relaytest.StartFlow(c)
				started <- struct{}{}
				err := <-f.Done()
				clientEnds <- transferEnd{kind: kind, err: err, at: time.Now()}
				return
			}
			// Half before Shutdown, the rest once it has begun: these
			// pairs are mid-transfer during the drain, and finish soon.
			payload := chachaBytes(uint64(i), size)
			e := transferEnd{kind: kind}
			for off := 0; off < size && e.err == nil; off += piece {
				if off == size/2 {
					started <- struct{}{}
					select {
					case <-resume:
					case <-time.After(15 * time.Second):
					}
				}
				_, e.err = c.Write(payload[off : off+piece])
			}
			if e.err == nil {
				e.err = halfClose(c)
			}
			if e.err == nil {
				var got []byte
				got, e.err = io.ReadAll(c)
				e.n = int64(copy(e.sum[:], got))
				if e.err == nil && sha256.Sum256(payload) != e.sum {
					e.err = fmt.Errorf("server saw %x (%d bytes back), sent %x", e.sum, len(got), sha256.Sum256(payload))
				}
			}
			e.at = time.Now()
			clientEnds <- e
		}()
	}
	t.Cleanup(clients.Wait)
	t.Cleanup(resumeNow)
	for range total {
		<-started
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Engine().LivePairs() == total }, "pairs not all spliced")

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shutStart := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- r.Node.Shutdown(ctx) }()

	// The listener hears the drain, so the relay is draining by then: a
	// dial that reaches the handler is refused 503.
	relaytest.Eventually(t, 2*time.Second, func() bool { return !st.State().Connected }, "listener never heard the drain")
	resumeNow()
	resumedAt := time.Now()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, wire.PathDial+"c2", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", wire.UpgradeProtocol)
	r.Node.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("dial request during the drain: %d %q, want 503", rec.Code, rec.Body)
	}

	// New dials while Shutdown runs.
	var refused503, connErrs int
	var shutErr error
	var shutTook time.Duration
	for done := false; !done; {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := d.DialContext(dctx, "tcp", "c2")
		dcancel()
		var re *endpoints.RelayError
		switch {
		case err == nil:
			c.Close()
			t.Errorf("a dial during the drain succeeded")
		case errors.As(err, &re) && re.Status == http.StatusServiceUnavailable:
			refused503++
		case errors.As(err, &re), errors.Is(err, context.DeadlineExceeded):
			t.Errorf("a dial during the drain: %v; want 503 or a connection error", err)
		default:
			connErrs++
		}
		select {
		case shutErr = <-shut:
			shutTook = time.Since(shutStart)
			done = true
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(shutStart) > grace+10*time.Second {
			t.Fatalf("Shutdown has not returned after %v", time.Since(shutStart))
		}
	}

	if endless > 0 {
		if !errors.Is(shutErr, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want context.DeadlineExceeded: pairs had to be cut", shutErr)
		}
		if shutTook < grace || shutTook > grace+slack {
			t.Errorf("Shutdown took %v, want between %v and %v", shutTook, grace, grace+slack)
		}
	} else if shutErr != nil {
		t.Errorf("Shutdown = %v, want nil: every pair finished", shutErr)
	}

	collect := func(ch chan transferEnd, side string) []transferEnd {
		var out []transferEnd
		timeout := time.After(grace + slack + 5*time.Second)
		for range total {
			select {
			case e := <-ch:
				out = append(out, e)
			case <-timeout:
				t.Fatalf("%s ends: %d of %d after Shutdown", side, len(out), total)
			}
		}
		return out
	}
	var serverFinishing int
	var cutEOF, cutErr int // how the ends of endless pairs saw the cut
	for _, e := range collect(serverEnds, "server") {
		switch e.kind {
		case 'F':
			serverFinishing++
			if e.err != nil || e.n != size {
				t.Errorf("server end of a finishing pair: %d bytes, %v; want %d and EOF", e.n, e.err, size)
			}
		case 'E':
			if e.err == nil {
				cutEOF++
			} else {
				cutErr++
			}
			if after := e.at.Sub(shutStart); after > grace+slack {
				t.Errorf("server end of an endless pair ended %v after Shutdown began, want <= %v", after, grace+slack)
			}
		default:
			t.Errorf("server end of unknown kind: %v", e.err)
		}
	}
	var lastCut, lastFinish time.Duration
	for _, e := range collect(clientEnds, "client") {
		after := e.at.Sub(shutStart)
		switch e.kind {
		case 'F':
			lastFinish = max(lastFinish, e.at.Sub(resumedAt))
			if e.err != nil {
				t.Errorf("finishing pair, client: %v", e.err)
			}
		case 'E':
			lastCut = max(lastCut, after)
			if errors.Is(e.err, io.EOF) {
				cutEOF++
			} else {
				cutErr++
			}
			if e.err == nil {
				t.Errorf("endless pair, client: ended without error or EOF")
			}
			if after > grace+slack {
				t.Errorf("endless pair, client ended %v after Shutdown began, want <= %v", after, grace+slack)
			}
		}
	}
	if serverFinishing != finishing {
		t.Errorf("%d finishing pairs reached the server's end, want %d", serverFinishing, finishing)
	}
	t.Logf("C2: %d finishing (done %v after their second half began) + %d endless pairs: Shutdown(%v) = %v after %v; endless pairs cut by %v (ends saw %d EOF, %d errors); dials during the drain: %d refused 503, %d connection errors, handler answered %d %q",
		finishing, lastFinish.Round(time.Millisecond), endless, grace, shutErr, shutTook.Round(time.Millisecond), lastCut.Round(time.Millisecond), cutEOF, cutErr, refused503, connErrs, rec.Code, strings.TrimSpace(rec.Body.String()))
}

// TestFaults is C4: faults injected by a proxy between the endpoints and the
// relay, mid-transfer. Each 1 MiB echo run must end byte-exact at both
// ends or with an error at both; a clean end is always byte-exact.
func TestFaults(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name      string
		cfg       relaynode.Config
		before    func(*relaytest.FaultProxy) // before the dial
		half      func(*relaytest.FaultProxy) // once half the bytes are written
		deadline  time.Duration               // on the endpoints' conns
		wantExact bool
	}{
		{name: "reset", half: (*relaytest.FaultProxy).ResetAll, deadline: 10 * time.Second},
		{name: "latency 20ms", before: func(p *relaytest.FaultProxy) { p.SetLatency(20 * time.Millisecond) }, deadline: 15 * time.Second, wantExact: true},
		{name: "latency set mid-transfer", half: func(p *relaytest.FaultProxy) { p.SetLatency(20 * time.Millisecond) }, deadline: 15 * time.Second, wantExact: true},
		{
			name:     "data limit 256KiB",
			before:   func(p *relaytest.FaultProxy) { p.SetDataLimit(256 << 10) },
			deadline: 10 * time.Second,
		},
		{
			name:     "blackhole",
			cfg:      relaynode.Config{Limits: actors.Limits{PairIdleTimeout: 500 * time.Millisecond}},
			half:     func(p *relaytest.FaultProxy) { p.Blackhole(true) },
			deadline: 5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			r := relaytest.Start(t, tt.cfg)
			p := relaytest.NewFaultProxy(t, r.Addr)
			t.Cleanup(func() { p.Blackhole(false) })
			ln, err := endpoints.ListenRelay("tcp", "c4", "http://"+p.Addr, endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			serverEnd := make(chan transferEnd, 1)
			serveLoop(t, ln, func(c net.Conn) {
				_ = c.SetDeadline(time.Now().Add(tt.deadline))
				h := sha256.New()
				n, err := io.Copy(c, io.TeeReader(c, h))
				if err == nil {
					err = halfClose(c)
				}
				e := transferEnd{n: n, err: err, at: time.Now()}
				h.Sum(e.sum[:0])
				select {
				case serverEnd <- e:
				default:
					t.Errorf("a second conn was accepted")
				}
			})
			if tt.before != nil {
				tt.before(p)
			}
			payload := chachaBytes(4, size)
			want := sha256.Sum256(payload)
			d := endpoints.NewRelayDialer(p.Addr, "c4-client")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := d.DialContext(ctx, "tcp", "c4")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetDeadline(start.Add(tt.deadline))
			half := make(chan struct{})
			werr := make(chan error, 1)
			go func() {
				for off := 0; off < size; off += 32 << 10 {
					if off == size/2 {
						close(half)
					}
					if _, err := c.Write(payload[off : off+32<<10]); err != nil {
						werr <- err
						return
					}
					// Paced, so that the echo is flowing when the fault comes.
					time.Sleep(time.Millisecond)
				}
				werr <- halfClose(c)
			}()
			readEnd := make(chan transferEnd, 1)
			go func() {
				h := sha256.New()
				n, err := io.Copy(h, c)
				e := transferEnd{n: n, err: err}
				h.Sum(e.sum[:0])
				readEnd <- e
			}()
			if tt.half != nil {
				select {
				case <-half:
					tt.half(p)
				case err := <-werr:
					werr <- err
				}
			}
			client := <-readEnd
			client.err = errors.Join(client.err, <-werr)
			client.at = time.Now()
			var server transferEnd
			select {
			case server = <-serverEnd:
			case <-time.After(tt.deadline + 5*time.Second):
				t.Fatalf("the server's end never finished")
			}
			took := client.at.Sub(start)
			if server.at.After(client.at) {
				took = server.at.Sub(start)
			}

			outcome := func(side string, e transferEnd) string {
				switch {
				case e.err != nil:
					return fmt.Sprintf("%s error after %d bytes (%v)", side, e.n, e.err)
				case e.n == size && e.sum == want:
					return side + " byte-exact"
				default:
					return fmt.Sprintf("%s clean end after %d bytes, SHA-256 %x", side, e.n, e.sum[:4])
				}
			}
			rs := r.Node.Engine().Stats()
			t.Logf("C4 %s: %s; %s; ended in %v; relay cut %d pairs idle", tt.name, outcome("client", client), outcome("server", server), took.Round(time.Millisecond), rs.PairsIdle)
			var problems []string
			for side, e := range map[string]transferEnd{"client": client, "server": server} {
				if e.err == nil && (e.n != size || e.sum != want) {
					problems = append(problems, fmt.Sprintf("%s: silent truncation or corruption: clean end after %d of %d bytes", side, e.n, size))
				}
			}
			if (client.err == nil) != (server.err == nil) {
				problems = append(problems, "one end succeeded and the other failed")
			}
			if tt.wantExact && (client.err != nil || server.err != nil) {
				problems = append(problems, "want byte-exact at both ends")
			}
			if took > tt.deadline+5*time.Second {
				problems = append(problems, fmt.Sprintf("run took %v", took))
			}
			p.Blackhole(false)
			relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Engine().LivePairs() == 0 }, "live pairs never returned to 0")
			for _, pr := range problems {
				t.Error(pr)
			}
		})
	}
}

// TestAbortReachesPeer is C4's rule on one leg, without a proxy: when one
// peer of a pair resets its connection mid-transfer, the other must read an
// error, never a clean EOF that passes a truncated stream off as whole.
func TestAbortReachesPeer(t *testing.T) {
	for _, resetter := range []string{"client", "server"} {
		t.Run(resetter+" resets", func(t *testing.T) {
			leakCheck(t)
			r := relaytest.Start(t, relaynode.Config{})
			ln, err := endpoints.ListenRelay("tcp", "abort", r.URL)
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			release := make(chan struct{})
			serveLoop(t, ln, func(c net.Conn) {
				accepted <- c
				<-release
			})
			t.Cleanup(func() { close(release) })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := endpoints.NewRelayDialer(r.Addr, "").DialContext(ctx, "tcp", "abort")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var s net.Conn
			select {
			case s = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("no conn accepted")
			}
			// Mid-transfer: 64 KiB each way, all read.
			payload := chachaBytes(1, 64<<10)
			buf := make([]byte, len(payload))
			for _, leg := range [][2]net.Conn{{c, s}, {s, c}} {
				_ = leg[1].SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := leg[0].Write(payload); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(leg[1], buf); err != nil || !bytes.Equal(buf, payload) {
					t.Fatalf("mid-transfer read: %v", err)
				}
			}
			gone, peer := c, s
			if resetter == "server" {
				gone, peer = s, c
			}
			tc := gone.(*endpoints.Conn).NetConn().(*net.TCPConn)
			_ = tc.SetLinger(0)
			_ = tc.Close()
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := peer.Read(buf)
			t.Logf("C4 one leg reset by the %s: the peer's next read: %d bytes, %v", resetter, n, err)
			switch {
			case err == nil:
				t.Errorf("the peer read %d bytes after the reset", n)
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Errorf("the peer never heard of the reset: %v", err)
			case err == io.EOF:
				t.Errorf("the peer read a clean EOF: a stream cut short must reach it as an error")
			}
		})
	}
}

// TestBlackholedStream is D7: the registration stream's link goes silent.
// The listener finds it dead by missed heartbeats, a dial meanwhile fails
// without hanging, and the listener is back once the link is.
func TestBlackholedStream(t *testing.T) {
	leakCheck(t)
	r := relaytest.Start(t, relaynode.Config{Heartbeat: 100 * time.Millisecond, Limits: actors.Limits{CallbackTimeout: time.Second}})
	p := relaytest.NewFaultProxy(t, r.Addr)
	t.Cleanup(func() { p.Blackhole(false) })
	var changes atomic.Int64
	ln, err := endpoints.ListenRelay("tcp", "d7", "http://"+p.Addr,
		endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		endpoints.WithHandshakeTimeout(500*time.Millisecond),
		endpoints.WithStateFunc(func(endpoints.ListenerState) { changes.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	st := ln.(stater)
	loop := serveLoop(t, ln, echoBack)
	d := endpoints.NewRelayDialer(r.Addr, "d7-client")
	if _, err := pollPingName(d, "d7", 5*time.Second); err != nil {
		t.Fatalf("dial before the blackhole: %v", err)
	}

	t0 := time.Now()
	p.Blackhole(true)
	relaytest.Eventually(t, 2*time.Second, func() bool { return !st.State().Connected }, "listener still connected through a silent link")
	detect := time.Since(t0)

	dialStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	c, err := d.DialContext(ctx, "tcp", "d7")
	cancel()
	dialTook := time.Since(dialStart)
	var re *endpoints.RelayError
	switch {
	case err == nil:
		c.Close()
		t.Errorf("a dial during the blackhole succeeded")
	case errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &re):
		t.Errorf("a dial during the blackhole hung for %v: %v", dialTook, err)
	case !errors.As(err, &re) || (re.Status != http.StatusGatewayTimeout && re.Status != http.StatusBadGateway):
		t.Errorf("a dial during the blackhole: %v; want 504 or 502", err)
	}

	t1 := time.Now()
	p.Blackhole(false)
	relaytest.Eventually(t, 5*time.Second, func() bool { return st.State().Connected }, "listener did not reconnect once the link was back")
	reconnect := time.Since(t1)
	s := st.State()
	if s.Reconnects < 1 {
		t.Errorf("State().Reconnects = %d, want >= 1", s.Reconnects)
	}
	if _, err := pollPingName(d, "d7", 5*time.Second); err != nil {
		t.Errorf("dial after the link came back: %v", err)
	}
	if errs := loop.acceptErrs(); len(errs) > 0 {
		t.Errorf("Accept returned errors: %v", errs)
	}
	t.Logf("D7: silent link found dead after %v (heartbeat 100ms); dial meanwhile failed after %v: %v; reconnected %v after the link came back (reconnects %d, state changes %d, last error %v)",
		detect.Round(time.Millisecond), dialTook.Round(time.Millisecond), err, reconnect.Round(time.Millisecond), s.Reconnects, changes.Load(), s.LastError)
}

// TestSoak is H4, opt-in with -soak=DURATION: 100 clients dial, echo 32 KiB
// and close in a loop, one iteration in ten aborted mid-transfer. Every 10s
// the clients pause at an iteration boundary, so that connections in flight
// do not blur the figures, and heap and goroutines are sampled: they must
// stay flat, and every echo not aborted must be exact.
func TestSoak(t *testing.T) {
	if *soak == 0 {
		t.Skip("opt-in: go test -run Soak ./relaynode -soak=5m")
	}
	leakCheck(t)
	const (
		clients = 100
		size    = 32 << 10
	)
	r := relaytest.Start(t, relaynode.Config{Limits: actors.Limits{EventQueue: 256, Tombstones: *soakTombstones}})
	ln, err := endpoints.ListenRelay("tcp", "soak", r.URL, endpoints.WithCallbackWorkers(64), endpoints.WithAcceptBacklog(128))
	if err != nil {
		t.Fatal(err)
	}
	loop := serveLoop(t, ln, echoBack)
	d := endpoints.NewRelayDialer(r.Addr, "soak-client")

	var st soakStats
	type sample struct {
		heap       uint64
		goroutines int
	}
	begin := time.Now()
	profiles := 0
	take := func(label string) sample {
		// Quiescent: no pair left, and the goroutine count settled.
		relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Engine().LivePairs() == 0 }, "pairs still live at a pause")
		n := runtime.NumGoroutine()
		for settle := time.Now().Add(2 * time.Second); time.Now().Before(settle); {
			time.Sleep(20 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				break
			}
			n = m
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := sample{heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
		if *soakProfile != "" {
			profiles++
			f, err := os.Create(fmt.Sprintf("%s-%03d.pprof", *soakProfile, profiles))
			if err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		t.Logf("soak %-8s t=%-4v HeapAlloc %6.2f MiB, goroutines %3d; iterations %d (aborted %d), dial errors %d, echo failures %d",
			label, time.Since(begin).Round(time.Second), float64(s.heap)/(1<<20), s.goroutines,
			st.iterations.Load(), st.aborted.Load(), st.dialErrors.Load(), st.failures.Load())
		return s
	}
	baseline := take("baseline")

	var gate sync.RWMutex // each iteration holds it shared; a sample, exclusively
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakClient(d, uint64(i), size, &gate, stop, &st)
		}()
	}
	var samples []sample
	tick := time.NewTicker(min(10*time.Second, *soak))
	for time.Since(begin) < *soak {
		<-tick.C
		gate.Lock()
		samples = append(samples, take("paused"))
		gate.Unlock()
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	loop.stop()
	after := take("stopped")

	first, last := samples[0], samples[len(samples)-1]
	t.Logf("H4 soak %v: %d iterations (%d aborted on purpose), %d dial errors, %d echo failures; HeapAlloc first %.2f MiB last %.2f MiB; goroutines first %d last %d (baseline %d, after stop %d)",
		*soak, st.iterations.Load(), st.aborted.Load(), st.dialErrors.Load(), st.failures.Load(),
		float64(first.heap)/(1<<20), float64(last.heap)/(1<<20), first.goroutines, last.goroutines, baseline.goroutines, after.goroutines)
	if last.heap > 2*first.heap+4<<20 {
		t.Errorf("HeapAlloc grew from %d to %d bytes", first.heap, last.heap)
	}
	if last.goroutines > first.goroutines+50 {
		t.Errorf("goroutines grew from %d to %d", first.goroutines, last.goroutines)
	}
	if n := st.failures.Load(); n > 0 {
		t.Errorf("%d echo failures on iterations that were not aborted; first: %v", n, st.firstFailure.Load())
	}
	if st.iterations.Load() == 0 {
		t.Errorf("no iteration completed")
	}
}

// soakStats are the soak's counters, shared by its clients.
type soakStats struct {
	iterations, aborted, dialErrors, failures atomic.Int64
	firstFailure                              atomic.Value // error
}

func (st *soakStats) fail(err error) {
	if st.failures.Add(1) == 1 {
		st.firstFailure.Store(err)
	}
}

// soakClient loops dial, write size random bytes, read the echo, verify,
// close, until stop; one iteration in ten closes mid-transfer instead. Each
// iteration holds gate shared.
func soakClient(d *endpoints.RelayDialer, seed uint64, size int, gate *sync.RWMutex, stop <-chan struct{}, st *soakStats) {
	var key [32]byte
	key[0] = byte(seed)
	rng := rand.New(rand.NewChaCha8(key))
	payload := make([]byte, size)
	got := bytes.NewBuffer(make([]byte, 0, size))
	iteration := func() {
		gate.RLock()
		defer gate.RUnlock()
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := d.DialContext(ctx, "tcp", "soak")
		cancel()
		if err != nil {
			st.dialErrors.Add(1)
			time.Sleep(10 * time.Millisecond)
			return
		}
		defer c.Close()
		st.iterations.Add(1)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if rng.IntN(10) == 0 {
			_, _ = c.Write(payload[:size/2])
			st.aborted.Add(1)
			return
		}
		got.Reset()
		_, err = c.Write(payload)
		if err == nil {
			err = halfClose(c)
		}
		if err == nil {
			_, err = got.ReadFrom(c)
		}
		switch {
		case err != nil:
			st.fail(err)
		case !bytes.Equal(got.Bytes(), payload):
			st.fail(fmt.Errorf("echo of %d bytes differs from the %d sent", got.Len(), size))
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		iteration()
	}
}

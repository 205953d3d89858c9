package relaynode_test

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

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestD5StalledListener floods dials at a listener that never reads its
// stream: its dials get 503 once its queue is full, its stream is dropped
// at the write deadline, a 503 comes before the first 404, and another
// name's dials all succeed meanwhile. How much slower the other name's
// dials get is a speed figure: relaybench -mode stalled measures it.
//
// The relay's write deadline can only fire once the kernel stops taking
// the stream's bytes. On loopback Linux autotunes a socket's send buffer to
// tcp_wmem's maximum (4 MiB), about 9,000 connect events, so the design's
// behaviour is checked on a relay whose sockets have a 16 KiB send buffer
// (set on its listener, inherited by what it accepts), and the default
// buffers are a known bug.
func TestD5StalledListener(t *testing.T) {
	cfg := relaynode.Config{
		EventWriteTimeout: 500 * time.Millisecond,
		DialRate:          -1,
		Limits:            actors.Limits{EventQueue: 8, CallbackTimeout: time.Second},
	}
	t.Run("small send buffer", func(t *testing.T) {
		r := hostileStart(t, cfg, 16<<10)
		hostileStalled(t, r, cfg, 30*time.Second)
	})
	t.Run("default buffers", func(t *testing.T) {
		r := relaytest.Start(t, cfg)
		hostileStalled(t, r, cfg, 40*time.Second)
	})
}

// hostileStart starts a relay for cfg, as relaytest.Start does, on a
// listener with SO_SNDBUF set to sndbuf: the sockets it accepts inherit the
// size and do not autotune it.
func hostileStart(t testing.TB, cfg relaynode.Config, sndbuf int) *relaytest.Relay {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return relaytest.StartOn(t, cfg, ln)
}

// hostileStalled is D5 on relay r: a stalled listener flooded with dials
// for at most floodBound.
func hostileStalled(t *testing.T, r *relaytest.Relay, cfg relaynode.Config, floodBound time.Duration) {
	const (
		floodWorkers = 24
		pingGap      = 5 * time.Millisecond
	)
	hostileEcho(t, r.URL, "healthy")
	samples := hostileSize(400, 200)
	if _, err := hostilePings(r.Addr, "healthy", 20, 0); err != nil {
		t.Fatalf("healthy dials before the flood: %v", err)
	}

	// The stalled server: a 1 KiB receive buffer, set before the connect
	// so the window it offers stays small, and no reads after the ready
	// event.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
		return errors.Join(err, serr)
	}}
	stalled, a := relaytest.Listen(small, r.Addr, "stalled", 5*time.Second)
	if stalled == nil {
		t.Fatalf("listen stalled: %v", a)
	}
	defer stalled.Close()

	var (
		wg        sync.WaitGroup
		tally     hostileTally
		gone      atomic.Bool
		first503  atomic.Int64 // since start
		first404  atomic.Int64
		during    int // healthy dials that succeeded
		duringErr error
		// Big connect events fill the socket sooner.
		client = wire.HeaderClientName + ": " + strings.Repeat("c", wire.MaxNameLen)
	)
	raw := relaytest.Request("POST", wire.PathDial+"stalled", relaytest.UpgradeHeaders, client)
	start := time.Now()
	for range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !gone.Load() && time.Since(start) < floodBound {
				a := relaytest.Do(r.Addr, raw, cfg.CallbackTimeout+3*time.Second)
				tally.add(fmt.Sprintf("%d %s", a.Status, a.Reason))
				switch a.Status {
				case http.StatusServiceUnavailable:
					first503.CompareAndSwap(0, int64(time.Since(start)))
					time.Sleep(20 * time.Millisecond) // a flood, not a busy loop
				case http.StatusNotFound:
					first404.CompareAndSwap(0, int64(time.Since(start)))
					gone.Store(true)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the healthy name, dialed meanwhile
		defer wg.Done()
		for !gone.Load() && time.Since(start) < floodBound && during < samples {
			if err := hostilePing(r.Addr, "healthy"); err != nil {
				duringErr = err
				return
			}
			during++
			time.Sleep(pingGap)
		}
	}()
	wg.Wait()

	if !gone.Load() {
		t.Fatalf("stalled name still registered %v into the flood: %s", floodBound, &tally)
	}
	if first503.Load() == 0 || first503.Load() > first404.Load() {
		t.Errorf("no 503 before the stream was dropped: %s", &tally)
	}
	if _, ok := hostileStatusName(t, r.Node, "stalled"); ok {
		t.Errorf("stalled registration still in the relay's status after its dials got 404")
	}
	if _, ok := hostileStatusName(t, r.Node, "healthy"); !ok {
		t.Errorf("healthy registration gone")
	}
	// The relay has closed the stalled stream: its bytes end in EOF.
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	left, err := io.Copy(io.Discard, stalled.R)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("stalled stream not closed by the relay: %v after %d bytes", err, left)
	}
	if duringErr != nil {
		t.Errorf("a healthy dial failed during the flood: %v", duringErr)
	}
	if during < 5 {
		t.Errorf("only %d healthy dials during the flood", during)
	}
	t.Logf("flood of %d dialers on the stalled name: first 503 at %v, stream dropped (first 404) at %v; answers: %s",
		floodWorkers, time.Duration(first503.Load()).Round(time.Millisecond), time.Duration(first404.Load()).Round(time.Millisecond), &tally)
	t.Logf("stalled stream after the drop: %d bytes left to read, then %v", left, err)
	t.Logf("healthy dials during the flood: %d, all ok", during)
}

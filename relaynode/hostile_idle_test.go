package relaynode_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestD6IdlePairs holds idle spliced pairs and reports what each costs,
// then checks that PairIdleTimeout cuts every one of them: each end reads
// EOF or a reset, and the relay counts each pair cut idle.
func TestD6IdlePairs(t *testing.T) {
	n := hostileSize(2000, 200)
	const bound = 5 * time.Second

	// makePairs dials n pairs through the relay with 8 workers and hands
	// each client side to client, as the sink hands each server side to
	// its handler.
	makePairs := func(t *testing.T, addr string, client func(c net.Conn)) error {
		var first atomic.Pointer[error]
		hostileWork(8, n, func(int) bool {
			c, a := hostileDial(addr, "idle", bound)
			if c == nil {
				err := fmt.Errorf("dial: %v", a)
				first.CompareAndSwap(nil, &err)
				return false
			}
			client(c)
			return true
		})
		if p := first.Load(); p != nil {
			return *p
		}
		return nil
	}

	t.Run("cost", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{DialRate: -1})
		var (
			mu   sync.Mutex
			held []net.Conn
		)
		hold := func(c net.Conn) {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
		defer func() {
			mu.Lock()
			for _, c := range held {
				c.Close()
			}
			mu.Unlock()
		}()
		sink := hostileServeSink(t, r.Addr, "idle", hold)
		if _, a := hostileDial(r.Addr, "nobody", bound); a.Status != http.StatusNotFound { // warm the dial path
			t.Fatalf("warm-up dial: %v", a)
		}
		baseMem, baseSocks, baseFDs := hostileReadMem(), relaytest.Sockets(t), hostileFDs(t)
		start := time.Now()
		if err := makePairs(t, r.Addr, hold); err != nil {
			t.Fatal(err)
		}
		relaytest.Eventually(t, bound, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(held) == 2*n && r.Node.Stats().Pairs == int64(n)
		}, fmt.Sprintf("want %d pairs held", n))
		elapsed := time.Since(start)
		mem, socks, fds := hostileReadMem(), relaytest.Sockets(t), hostileFDs(t)
		if sink.failed.Load() != 0 {
			t.Errorf("%d callbacks failed", sink.failed.Load())
		}
		perPair := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
		sockPer := float64(socks-baseSocks) / float64(n)
		fdPer := float64(fds-baseFDs) / float64(n)
		t.Logf("%d idle pairs spliced in %v", n, elapsed.Round(time.Millisecond))
		t.Logf("per pair, in-process (relay plus the test's two raw ends): heap %.0f B + stacks %.0f B = %.1f KiB",
			perPair(baseMem.heap, mem.heap), perPair(baseMem.stack, mem.stack), perPair(baseMem.total(), mem.total())/1024)
		t.Logf("per pair: %.2f sockets (2 relay-side + 2 endpoint-side expected), %.2f fds of every kind (the rest are splice pipes)",
			sockPer, fdPer)
		if sockPer < 4 || sockPer > 4.05 {
			t.Errorf("%.2f sockets per pair, want 4 (2 relay-side, 2 endpoint-side)", sockPer)
		}
		t.Run("no pipes while idle", func(t *testing.T) {
			if fdPer > 4.05 {
				t.Errorf("%.2f fds per idle pair, want 4 (its sockets)", fdPer)
			}
		})
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		held = nil
		mu.Unlock()
		relaytest.Eventually(t, bound, func() bool { return r.Node.Stats().Pairs == 0 }, "pairs still live after both ends closed")
		relaytest.SocketsBack(t, baseSocks, bound)
	})

	t.Run("idle timeout", func(t *testing.T) {
		const idle = time.Second
		r := relaytest.Start(t, relaynode.Config{DialRate: -1, Limits: actors.Limits{PairIdleTimeout: idle}})
		var (
			mu   sync.Mutex
			ends []error
			wg   sync.WaitGroup
		)
		// watch reads c until the relay cuts it. The deadline is a bound
		// against hangs, far past the idle timeout.
		watch := func(c net.Conn) {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(idle + 30*time.Second))
			var b [1]byte
			_, err := c.Read(b[:])
			mu.Lock()
			ends = append(ends, err)
			mu.Unlock()
		}
		sink := hostileServeSink(t, r.Addr, "idle", watch)
		before := r.Node.Stats()
		err := makePairs(t, r.Addr, func(c net.Conn) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				watch(c)
			}()
		})
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		relaytest.Eventually(t, bound, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(ends) == 2*n
		}, "not every end of every pair has ended")
		var eofs, resets int
		for _, err := range ends {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("an end still open %v past the idle timeout %v", 30*time.Second, idle)
			case errors.Is(err, io.EOF):
				eofs++
			default:
				resets++
			}
		}
		relaytest.Eventually(t, bound, func() bool { return r.Node.Stats().Pairs == 0 }, "pairs still live after the idle timeout")
		after := r.Node.Stats()
		if cut := after.PairsIdle - before.PairsIdle; cut != int64(n) {
			t.Errorf("relay counted %d pairs cut idle, want %d", cut, n)
		}
		if sink.failed.Load() != 0 {
			t.Errorf("%d callbacks failed", sink.failed.Load())
		}
		t.Logf("%d idle pairs, idle timeout %v: all %d ends cut (%d EOF, %d reset); pairs live 0",
			n, idle, len(ends), eofs, resets)
	})
}

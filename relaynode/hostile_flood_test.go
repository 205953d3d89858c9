package relaynode_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestD3RegistrationFlood registers thousands of names from one address:
// exactly MaxRegistrationsPerIP succeed, the rest get 429 while those are
// held, memory stays bounded and returns when the registrations end.
func TestD3RegistrationFlood(t *testing.T) {
	n := hostileSize(5000, 500)
	// relaytest.Start lifts the per-IP cap for other tests; here it is
	// relaynode's default.
	const perIP = 64
	r := relaytest.Start(t, relaynode.Config{MaxRegistrationsPerIP: perIP})
	before := hostileReadMem()
	var (
		tally   hostileTally
		mu      sync.Mutex // guards held and refused
		held    []*relaytest.Stream
		refused int
	)
	start := time.Now()
	hostileWork(16, n, func(i int) bool {
		st, a := relaytest.Listen(nil, r.Addr, fmt.Sprintf("reg-%d", i), 5*time.Second)
		tally.add(fmt.Sprintf("%d %s", a.Status, a.Reason))
		mu.Lock()
		defer mu.Unlock()
		if st != nil {
			held = append(held, st)
		} else if a.Status == http.StatusTooManyRequests {
			refused++
		}
		return true
	})
	elapsed := time.Since(start)
	t.Cleanup(func() {
		for _, st := range held {
			st.Close()
		}
	})
	during := hostileReadMem()
	if len(held) != perIP || refused != n-perIP {
		t.Errorf("%d registrations: %d held, %d refused 429, want %d and %d; answers: %s",
			n, len(held), refused, perIP, n-perIP, &tally)
	}
	if got := hostileRegistrations(t, r.Node); got != perIP {
		t.Errorf("relay has %d registrations, want %d", got, perIP)
	}
	// Another loopback address has its own allowance.
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if st, a := relaytest.Listen(other, r.Addr, "other-ip", 5*time.Second); st != nil {
		st.Close()
	} else if a.Status != 0 {
		t.Errorf("registration from 127.0.0.2 after 127.0.0.1's cap: %v, want 200", a)
	} else {
		t.Logf("no registration from 127.0.0.2 (%v): per-address check skipped", a.Err)
	}
	for _, st := range held {
		st.Close()
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return hostileRegistrations(t, r.Node) == 0 },
		"registrations still live after their streams closed")
	// The cap is released: the address may register again.
	st, a := relaytest.Listen(nil, r.Addr, "again", 5*time.Second)
	if st == nil {
		t.Fatalf("registration after the flood ended: %v", a)
	}
	st.Close()
	relaytest.Eventually(t, 5*time.Second, func() bool { return hostileRegistrations(t, r.Node) == 0 }, "registration again still live")
	after := hostileReadMem()
	t.Logf("%d registrations from 127.0.0.1 in %v: %s", n, elapsed.Round(time.Millisecond), &tally)
	t.Logf("heap after GC: before %.2f MiB, with %d held %.2f MiB (%+.2f), after closing all %.2f MiB (%+.2f); stacks %.2f, %.2f, %.2f MiB",
		float64(before.heap)/(1<<20), perIP, float64(during.heap)/(1<<20), hostileMiB(before.heap, during.heap),
		float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap),
		float64(before.stack)/(1<<20), float64(during.stack)/(1<<20), float64(after.stack)/(1<<20))
	if grown := hostileMiB(before.heap, during.heap); grown > 8 {
		t.Errorf("heap grew %.2f MiB with %d registrations held and %d refused, want at most 8 MiB", grown, perIP, n-perIP)
	}
	if grown := hostileMiB(before.heap, after.heap); grown > 2 {
		t.Errorf("heap %.2f MiB above baseline after the registrations ended, want at most 2 MiB", grown)
	}

	t.Run("overall cap", func(t *testing.T) {
		const total = 8
		r := relaytest.Start(t, relaynode.Config{MaxRegistrations: total})
		var streams []*relaytest.Stream
		defer func() {
			for _, st := range streams {
				st.Close()
			}
		}()
		for i := range total {
			st, a := relaytest.Listen(nil, r.Addr, fmt.Sprintf("cap-%d", i), 5*time.Second)
			if st == nil {
				t.Fatalf("registration %d of %d: %v", i+1, total, a)
			}
			streams = append(streams, st)
		}
		_, a := relaytest.Listen(nil, r.Addr, "one-more", 5*time.Second)
		if a.Status != http.StatusServiceUnavailable {
			t.Errorf("registration past MaxRegistrations %d: %v, want 503", total, a)
		}
		t.Logf("MaxRegistrations %d: registration %d answered %v", total, total+1, a)
	})
}

// TestD4NeverCalledBack dials a registered server that never calls back,
// with more dials in flight than MaxPendingPerName: the excess is refused
// 503 by the pending cap, the pending ones get 504, never before the
// callback deadline, and the
// pending count and the heap come back.
func TestD4NeverCalledBack(t *testing.T) {
	const (
		perName = 100
		timeout = time.Second
		workers = perName + 50 // more in flight than the cap, or it is never reached
	)
	n := hostileSize(5000, 500)
	r := relaytest.Start(t, relaynode.Config{
		DialRate: -1,
		Limits: actors.Limits{
			MaxPendingPerName: perName,
			CallbackTimeout:   timeout,
			EventQueue:        2 * perName, // so that only the pending cap refuses
		},
	})
	sink := hostileServeSink(t, r.Addr, "sink", nil) // reads its events, never calls back
	before := hostileReadMem()

	answers := make([]relaytest.Answer, n)
	var (
		monWG      sync.WaitGroup
		maxPending atomic.Int64
		maxLive    atomic.Int64
	)
	stop := make(chan struct{})
	monWG.Add(1)
	go func() { // the pending count, as the relay reports it
		defer monWG.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := r.Node.Status(ctx) // not hostileStatusName: no t.Fatal off the test's goroutine
			cancel()
			for _, ns := range st.Names {
				if err == nil && ns.Name == "sink" && ns.Pending > maxPending.Load() {
					maxPending.Store(ns.Pending)
				}
			}
			if l := r.Node.Stats().Pending; l > maxLive.Load() {
				maxLive.Store(l)
			}
		}
	}()
	raw := relaytest.Request("POST", wire.PathDial+"sink", relaytest.UpgradeHeaders, wire.HeaderClientName+": d4")
	start := time.Now()
	hostileWork(workers, n, func(i int) bool {
		answers[i] = relaytest.Do(r.Addr, raw, timeout+10*time.Second) // a bound against hangs
		return true
	})
	elapsed := time.Since(start)
	close(stop)
	monWG.Wait()

	var tally hostileTally
	var fast, timedOut int
	for _, a := range answers {
		tally.add(fmt.Sprintf("%d %s", a.Status, a.Reason))
		switch a.Status {
		case http.StatusServiceUnavailable:
			fast++
			if a.Reason != "too many pending dials" {
				t.Errorf("503 %q, want the pending cap's refusal", a.Reason)
			}
		case http.StatusGatewayTimeout:
			timedOut++
			// A lower bound only, which load cannot break: the 504 never
			// comes before the deadline.
			if a.Took < timeout/2 || a.Reason != "callback deadline passed" {
				t.Errorf("504 %q after %v, want the deadline's refusal, not before the deadline %v", a.Reason, a.Took.Round(time.Millisecond), timeout)
			}
		}
	}
	if fast+timedOut != n {
		t.Errorf("%d dials: want only 503 and 504, got %s", n, &tally)
	}
	if timedOut < perName {
		t.Errorf("%d dials answered 504, want at least the %d pending", timedOut, perName)
	}
	if m := maxPending.Load(); m > perName {
		t.Errorf("relay reported %d pending dials on the name, cap %d", m, perName)
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Stats().Pending == 0 },
		"pending dials still live")
	relaytest.Eventually(t, 5*time.Second, func() bool { return sink.events.Load() == int64(timedOut) },
		fmt.Sprintf("connect events %d, want one per pending dial (%d)", sink.events.Load(), timedOut))
	after := hostileReadMem()
	t.Logf("%d dials to a server that never calls back, %d in flight, in %v: %s",
		n, workers, elapsed.Round(time.Millisecond), &tally)
	t.Logf("pending on the name peaked at %d (cap %d; live pending actors peaked at %d), back to 0; %d connect events, one per 504",
		maxPending.Load(), perName, maxLive.Load(), sink.events.Load())
	t.Logf("heap after GC: before %.2f MiB, after %.2f MiB (%+.2f MiB)",
		float64(before.heap)/(1<<20), float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap))
	if grown := hostileMiB(before.heap, after.heap); grown > 4 {
		t.Errorf("heap %.2f MiB above baseline after %d dials, want at most 4 MiB", grown, n)
	}
}

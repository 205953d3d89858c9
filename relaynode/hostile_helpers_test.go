package relaynode_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// Hostile-input checks of the design's matrix: S6 odd
// names, S7 malformed requests, D1 slowloris, D2 slow body, D3 a
// registration flood from one address, D4 dials to a server that never
// calls back, D5 a listener that never reads its stream, D6 idle pairs.
// Each is asserted, bounded in count and time, runs on loopback only,
// awaits every goroutine it starts, and reports its figures with t.Logf:
// run with -v to see them.
//
// Sizes are scaled down by default, for the race detector in CI:
//
//	go test -race -shuffle=on -count=1 -run 'S6|S7|D[1-6]' -v ./relaynode/
//
// The design's full sizes (1,000 malformed requests, 200 slowloris
// connections, 5,000 registrations, 5,000 dials, 2,000 idle pairs):
//
//	go test ./relaynode -run 'S6|S7|D[1-6]' -hostile.full -v

var hostileFull = flag.Bool("hostile.full", false, "run hostile-input checks at full size")

// hostileSize returns full under -hostile.full (without -short), scaled
// otherwise.
func hostileSize(full, scaled int) int {
	if *hostileFull && !testing.Short() {
		return full
	}
	return scaled
}

// hostileDial dials name on the relay at addr by hand, with no client
// name, and returns the spliced connection after the 101, within bound;
// otherwise nil and the answer. Idle peers: nothing may follow the 101 yet.
func hostileDial(addr, name string, bound time.Duration) (net.Conn, relaytest.Answer) {
	c, a := relaytest.Upgrade(addr, relaytest.DialRequest(name, ""), bound)
	if c == nil {
		return nil, a
	}
	if n := c.R.Buffered(); n > 0 {
		c.Close()
		return nil, relaytest.Answer{Err: fmt.Errorf("%d bytes behind the 101", n)}
	}
	return c, a
}

// hostileSink is a registration made by hand that counts its connect
// events and, with a handler, answers each with a raw callback and passes
// the server side of the pair to the handler. Its goroutines end, and are
// awaited, in the test's cleanup.
type hostileSink struct {
	st     *relaytest.Stream
	events atomic.Int64 // connect events read
	failed atomic.Int64 // callbacks refused
	wg     sync.WaitGroup
}

func hostileServeSink(t testing.TB, addr, name string, handle func(c net.Conn)) *hostileSink {
	t.Helper()
	st, a := relaytest.Listen(nil, addr, name, 5*time.Second)
	if st == nil {
		t.Fatalf("listen %q: %v", name, a)
	}
	s := &hostileSink{st: st}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			ev, err := st.Events.Next()
			if err != nil {
				return
			}
			if ev.Type != wire.EventConnect {
				continue
			}
			s.events.Add(1)
			if handle == nil {
				continue
			}
			ce, err := wire.ParseConnect(ev.Data)
			if err != nil {
				s.failed.Add(1)
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c, _ := relaytest.Upgrade(addr, relaytest.AcceptRequest(ce.Callback, st.Registration), 5*time.Second)
				if c == nil || c.R.Buffered() > 0 {
					s.failed.Add(1)
					if c != nil {
						c.Close()
					}
					return
				}
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		st.Close()
		s.wg.Wait()
	})
	return s
}

// hostileWork runs do(i) for each i in [0, n) on workers goroutines and
// returns once every call has returned. A call that returns false stops
// the rest from starting.
func hostileWork(workers, n int, do func(i int) bool) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		stop atomic.Bool
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if !do(i) {
					stop.Store(true)
				}
			}
		}()
	}
	wg.Wait()
}

// hostileEcho serves name on the relay with the endpoints library and
// echoes every connection, until the test's cleanup.
func hostileEcho(t testing.TB, relayURL, name string) {
	t.Helper()
	ln, err := endpoints.ListenRelay("tcp", name, relayURL)
	if err != nil {
		t.Fatalf("listen %q: %v", name, err)
	}
	relaytest.ServeEcho(t, ln)
}

// hostilePing makes one healthy dial of name through the relay at addr: a
// relaytest.Ping within 5s.
func hostilePing(addr, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return relaytest.Ping(ctx, endpoints.NewRelayDialer(addr, "probe"), name)
}

// hostilePings makes n sequential healthy dials, pausing gap between them,
// and returns how many succeeded and the first error.
func hostilePings(addr, name string, n int, gap time.Duration) (int, error) {
	for i := range n {
		if err := hostilePing(addr, name); err != nil {
			return i, err
		}
		time.Sleep(gap)
	}
	return n, nil
}

// hostileMem is the heap in use and the goroutine stacks, after two GCs.
type hostileMem struct{ heap, stack uint64 }

func hostileReadMem() hostileMem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return hostileMem{heap: m.HeapAlloc, stack: m.StackInuse}
}

func (m hostileMem) total() uint64 { return m.heap + m.stack }

// hostileMiB is the signed difference b-a in MiB.
func hostileMiB(a, b uint64) float64 { return (float64(b) - float64(a)) / (1 << 20) }

// hostileFDs counts this process's open fds, of every kind.
func hostileFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// hostileStatus returns the relay's status, within 5s.
func hostileStatus(t testing.TB, n *relaynode.Node) relaynode.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// hostileStatusName returns the relay's status of name, if registered.
func hostileStatusName(t testing.TB, n *relaynode.Node, name string) (relaynode.NameStatus, bool) {
	t.Helper()
	for _, ns := range hostileStatus(t, n).Names {
		if ns.Name == name {
			return ns, true
		}
	}
	return relaynode.NameStatus{}, false
}

// hostileRegistrations returns the relay's number of live registrations.
func hostileRegistrations(t testing.TB, n *relaynode.Node) int {
	t.Helper()
	return hostileStatus(t, n).Registrations
}

// hostileTally counts answers by "status reason", safe for concurrent use.
type hostileTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *hostileTally) add(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = make(map[string]int)
	}
	h.n[key]++
}

func (h *hostileTally) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.n))
	for k := range h.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, h.n[k])
	}
	return b.String()
}

package relaynode

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// burst opens and closes n registrations through the node's handler, in
// process, each from its own client address, workers at a time.
func burst(t *testing.T, n *Node, count, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithCancel(context.Background())
				req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/listen/burst-"+strconv.Itoa(i), nil)
				req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:4000", i>>16&255, i>>8&255, i&255)
				rec := newStreamRecorder()
				done := make(chan struct{})
				go func() { defer close(done); n.ServeHTTP(rec, req) }()
				select {
				case <-rec.wrote:
				case <-done:
				case <-time.After(5 * time.Second):
				}
				cancel()
				<-done
				if rec.Code != http.StatusOK {
					t.Errorf("registration %d: status %d %q", i, rec.Code, rec.Body.String())
				}
			}
		}()
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
}

// streamRecorder is an httptest.ResponseRecorder that signals its first
// flush, the stream's ready event, and is safe to read after the handler
// returned.
type streamRecorder struct {
	*httptest.ResponseRecorder
	once  sync.Once
	wrote chan struct{}
}

func newStreamRecorder() *streamRecorder {
	return &streamRecorder{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
}

func (r *streamRecorder) Flush() {
	r.ResponseRecorder.Flush()
	r.once.Do(func() { close(r.wrote) })
}

// rssKiB reads VmRSS from /proc/self/status; 0 where there is none.
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestMemoryAfterBurst opens and closes 10,000 registrations, each from
// its own address, and checks that what the node keeps afterwards is
// bounded: the live counts are back to zero, and the heap grew by far less
// than the burst's peak. RELAY_MEMORY_SETTLE (a duration) waits before the
// final figures, for a measurement like docs' (15s).
func TestMemoryAfterBurst(t *testing.T) {
	const count = 10000
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	burst(t, n, 100, 8) // warm the pools and the actor system
	before, rssBefore := heapInuse(), rssKiB()
	burst(t, n, count, 8)

	if d, err := time.ParseDuration(os.Getenv("RELAY_MEMORY_SETTLE")); err == nil {
		time.Sleep(d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().Registrations != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := n.Stats()
	if st.Registrations != 0 || st.Pending != 0 {
		t.Fatalf("after the burst: %d registrations, %d pending", st.Registrations, st.Pending)
	}
	after, rssAfter := heapInuse(), rssKiB()
	grew := int64(after) - int64(before)
	t.Logf("%d registrations: heap in use %d KiB before, %d KiB after (%+d KiB, %d B a registration); RSS %d KiB before, %d KiB after",
		count, before>>10, after>>10, grew>>10, grew/count, rssBefore, rssAfter)
	// What stays is the actor system's process registry: 1,024 buckets of
	// 32 shards, each a Go map that keeps its first allocation once an
	// actor id hashed to it, so its growth is bounded by the shards
	// (32,768 maps, about 300 B each once touched) and not by the number of
	// registrations: about 3 MB after the first 10,000, less after each
	// further burst. The bound is that ceiling with 2 MiB to spare: what it
	// catches is state that grows with the burst, such as a registration's
	// listener, queue and channels (about 2.7 KB each while live) left behind.
	const registryCeiling = 32768*400 + 2<<20
	if grew > registryCeiling {
		t.Fatalf("heap grew %d B over %d closed registrations (%d B each), want at most %d B", grew, count, grew/count, registryCeiling)
	}
}

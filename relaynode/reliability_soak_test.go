package relaynode_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

var soak = flag.Duration("soak", 0, "run TestSoak for this long")

// soakTombstones sets TestSoak's relay Config.Tombstones.
var soakTombstones = flag.Int("soak.tombstones", 0, "TestSoak's relay Config.Tombstones (0: default)")

// soakProfile, when set, makes TestSoak write a heap profile at every
// sample, as PREFIX-NNN.pprof, to compare with go tool pprof -base.
var soakProfile = flag.String("soak.heapprofile", "", "write TestSoak's heap profiles as `PREFIX`-NNN.pprof")

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
	loop := relaytest.Serve(t, ln, relaytest.Echo)
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
		relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Stats().Pairs == int64(0) }, "pairs still live at a pause")
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
	loop.Stop()
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
			err = relaytest.HalfClose(c)
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

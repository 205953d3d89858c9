package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memSample is this process's footprint at one moment, after garbage
// collection: the live heap, the goroutine stacks, and the open fds by
// kind.
type memSample struct {
	HeapAlloc  uint64 `json:"heap_alloc_bytes"`
	StackInuse uint64 `json:"stack_inuse_bytes"`
	FDs        int    `json:"fds"`
	Sockets    int    `json:"sockets"`
	Pipes      int    `json:"pipes"`
	Goroutines int    `json:"goroutines"`
}

// readSample collects garbage twice (the second pass frees what the first
// pass's finalizers released) and reads the footprint.
func readSample() (memSample, error) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return memSample{}, fmt.Errorf("count fds: %w", err)
	}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the fd of the directory listing itself, now closed
		}
		s.FDs++
		switch {
		case strings.HasPrefix(link, "socket:["):
			s.Sockets++
		case strings.HasPrefix(link, "pipe:["):
			s.Pipes++
		}
	}
	return s, nil
}

// settle samples until the fd and goroutine counts hold still across two
// samples 20ms apart (closed conns' goroutines finish, pooled splice pipes
// are finalized), at most 40 times, and returns the last sample.
func settle(ctx context.Context) (memSample, error) {
	prev, err := readSample()
	if err != nil {
		return memSample{}, err
	}
	for range 40 {
		select {
		case <-ctx.Done():
			return memSample{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		s, err := readSample()
		if err != nil {
			return memSample{}, err
		}
		if s.FDs == prev.FDs && s.Goroutines == prev.Goroutines {
			return s, nil
		}
		prev = s
	}
	return prev, nil
}

// footprint is a difference of footprints, or one divided by a count.
type footprint struct {
	HeapBytes  float64 `json:"heap_bytes"`
	StackBytes float64 `json:"stack_bytes"`
	TotalBytes float64 `json:"total_bytes"` // heap + stacks
	FDs        float64 `json:"fds"`
	Sockets    float64 `json:"sockets"`
	Pipes      float64 `json:"pipes"`
	Goroutines float64 `json:"goroutines"`
}

// delta returns b − a.
func delta(a, b memSample) footprint {
	f := footprint{
		HeapBytes:  float64(b.HeapAlloc) - float64(a.HeapAlloc),
		StackBytes: float64(b.StackInuse) - float64(a.StackInuse),
		FDs:        float64(b.FDs - a.FDs),
		Sockets:    float64(b.Sockets - a.Sockets),
		Pipes:      float64(b.Pipes - a.Pipes),
		Goroutines: float64(b.Goroutines - a.Goroutines),
	}
	f.TotalBytes = f.HeapBytes + f.StackBytes
	return f
}

// minus returns f − g.
func (f footprint) minus(g footprint) footprint {
	return footprint{
		HeapBytes: f.HeapBytes - g.HeapBytes, StackBytes: f.StackBytes - g.StackBytes,
		TotalBytes: f.TotalBytes - g.TotalBytes, FDs: f.FDs - g.FDs, Sockets: f.Sockets - g.Sockets,
		Pipes: f.Pipes - g.Pipes, Goroutines: f.Goroutines - g.Goroutines,
	}
}

// per returns f divided by n.
func (f footprint) per(n int) footprint {
	d := float64(max(n, 1))
	return footprint{
		HeapBytes: f.HeapBytes / d, StackBytes: f.StackBytes / d, TotalBytes: f.TotalBytes / d,
		FDs: f.FDs / d, Sockets: f.Sockets / d, Pipes: f.Pipes / d, Goroutines: f.Goroutines / d,
	}
}

// holdConns opens n connections with dial, 8 at a time, exchanging one
// byte on each so that it is known to be fully set up (for a relayed
// conn: spliced, both directions), and returns them open. On an error it
// closes what it opened.
func holdConns(ctx context.Context, dial dialFunc, n int, p *progress, label string) ([]net.Conn, error) {
	conns, err := openMany(ctx, n, 8, p, label, func(int) (net.Conn, error) {
		c, err := dialBounded(ctx, dial)
		if err == nil {
			if err = echoByte(c); err != nil {
				c.Close()
			}
		}
		return c, err
	}, closeAll)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return conns, nil
}

// openMany opens n things with open(i), i from 0 to n−1, workers at a
// time, showing progress as label, and returns them all. On the first
// error (or ctx's end) it stops, closes what it opened with closeAll and
// returns the error with how far it got.
func openMany[T any](ctx context.Context, n, workers int, p *progress, label string,
	open func(i int) (T, error), closeAll func([]T)) ([]T, error) {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex
		out   = make([]T, 0, n)
		first error
	)
	stop := p.ticking(func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%s: %d/%d", label, len(out), n)
	})
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if i >= int64(n) || failed || ctx.Err() != nil {
					return
				}
				x, err := open(int(i))
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					out = append(out, x)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stop()
	if first == nil {
		first = ctx.Err()
	}
	if first != nil {
		closeAll(out)
		return nil, fmt.Errorf("after %d of %d: %w", len(out), n, first)
	}
	return out, nil
}

// closeAll closes every conn.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// waitFor polls cond every 10ms until it holds, and fails after timeout
// with what.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// runDials makes n round trips on dial with conc loops, and returns the
// failures and the first error.
func runDials(ctx context.Context, dial dialFunc, conc, n int) (failed int64, first error) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs atomic.Int64
		once sync.Once
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if _, err := roundTrip(ctx, dial); err != nil {
					errs.Add(1)
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return errs.Load(), first
}

// absorber is a set of parked goroutines that take the free goroutine
// stack slots the runtime keeps in its stack spans. StackInuse counts
// spans, not live stacks, so without it the first goroutines of a
// measurement would reuse slots freed earlier and the delta would read
// low; with it, the goroutines measured take new spans.
type absorber struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

// absorbStackSlack starts enough parked goroutines to fill the free
// slots of the starting stack size: one per minimum-size (2 KiB) stack
// that the spans in use could hold beyond one per live goroutine, and a
// margin.
func absorbStackSlack() *absorber {
	const minStack = 2048
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slack := max(0, int(ms.StackInuse/minStack)-runtime.NumGoroutine())
	a := &absorber{stop: make(chan struct{})}
	for range slack + 64 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			<-a.stop
		}()
	}
	return a
}

// release ends the absorber's goroutines and waits for them.
func (a *absorber) release() {
	close(a.stop)
	a.wg.Wait()
}

// measureHeld returns the footprint before and after hold, which opens
// what is to be measured and keeps it open. Free stack slots are absorbed
// across both samples, so the stacks of hold's goroutines count in full.
func measureHeld(ctx context.Context, hold func() error) (before, after memSample, err error) {
	ab := absorbStackSlack()
	defer ab.release()
	if before, err = settle(ctx); err != nil {
		return before, after, err
	}
	if err = hold(); err != nil {
		return before, after, err
	}
	after, err = settle(ctx)
	return before, after, err
}

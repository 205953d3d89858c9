package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// roundTrip dials, echoes one byte and closes, and returns how long that
// took. Every step is bounded: the dial by dialTimeout, the echo by
// ioTimeout.
func roundTrip(ctx context.Context, dial dialFunc) (time.Duration, error) {
	start := time.Now()
	c, err := dialBounded(ctx, dial)
	if err != nil {
		return 0, err
	}
	if err := echoByte(c); err != nil {
		c.Close()
		return 0, err
	}
	c.Close()
	return time.Since(start), nil
}

// dialBounded dials with dialTimeout on top of ctx.
func dialBounded(ctx context.Context, dial dialFunc) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	return c, nil
}

// echoByte writes one byte on c and reads its echo, within ioTimeout.
func echoByte(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return fmt.Errorf("echo write: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("echo read: %w", err)
	}
	if b[0] != 'x' {
		return fmt.Errorf("echo read: got %q, want 'x'", b[0])
	}
	_ = c.SetDeadline(time.Time{})
	return nil
}

// latencyStats summarizes one latency run; times are in microseconds.
type latencyStats struct {
	N      int     `json:"n"`
	Errors int     `json:"errors"`
	MeanUS float64 `json:"mean_us"`
	MinUS  float64 `json:"min_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

// summarize sorts samples and returns their statistics.
func summarize(samples []time.Duration, errors int) latencyStats {
	slices.Sort(samples)
	st := latencyStats{N: len(samples), Errors: errors}
	if len(samples) == 0 {
		return st
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	st.MeanUS = us(sum / time.Duration(len(samples)))
	st.MinUS = us(samples[0])
	st.P50US = us(quantile(samples, 0.50))
	st.P90US = us(quantile(samples, 0.90))
	st.P99US = us(quantile(samples, 0.99))
	st.P999US = us(quantile(samples, 0.999))
	st.MaxUS = us(samples[len(samples)-1])
	return st
}

// quantile returns the q quantile (0 < q <= 1) of sorted, by nearest rank:
// the smallest sample with at least q of all samples at or below it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// us converts d to microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// rateStats is the outcome of one fixed-time rate run.
type rateStats struct {
	Target      string  `json:"target"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"` // from the start to the last loop's end (summed over slices)
	Dials       int64   `json:"dials"`   // completed round trips
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	PerSecond   float64 `json:"dials_per_second"` // the median slice's, when sliced
	// Slices are the rates of the slices of a sliced run, in time order.
	Slices []float64 `json:"slice_dials_per_second,omitempty"`
}

// measureRate runs conc loops of roundTrip on dial for d, and returns the
// completed round trips per second. A loop starts no round trip after d;
// the one in flight is bounded by the dial and echo timeouts. While it
// runs, the progress line shows label and the count so far.
func measureRate(ctx context.Context, name string, dial dialFunc, conc int, d time.Duration, p *progress, label string) rateStats {
	var (
		dials, errs atomic.Int64
		firstMu     sync.Mutex
		first       string
		wg          sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	stop := p.ticking(func() string {
		el := time.Since(start)
		return fmt.Sprintf("%s: %s/%s, %d dials", label, el.Round(100*time.Millisecond), d, dials.Load())
	})
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if _, err := roundTrip(ctx, dial); err != nil {
					if ctx.Err() != nil {
						return
					}
					if errs.Add(1) == 1 {
						firstMu.Lock()
						first = err.Error()
						firstMu.Unlock()
					}
					continue
				}
				dials.Add(1)
			}
		}()
	}
	wg.Wait()
	stop()
	el := time.Since(start)
	st := rateStats{
		Target: name, Concurrency: conc, Seconds: el.Seconds(),
		Dials: dials.Load(), Errors: errs.Load(), FirstError: first,
	}
	if el > 0 {
		st.PerSecond = float64(st.Dials) / el.Seconds()
	}
	return st
}

// warmUp runs n round trips on dial, and fails when none succeeds: the
// path is broken, and measuring it would report nonsense.
func warmUp(ctx context.Context, t target, n int) error {
	var last error
	ok := 0
	for range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := roundTrip(ctx, t.dial); err != nil {
			last = err
			continue
		}
		ok++
	}
	if ok == 0 && n > 0 {
		return fmt.Errorf("warm-up of %s: no round trip succeeded: %w", t.name, last)
	}
	return nil
}

// median returns the median of xs (the lower middle for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// bulkRun is one target's throughput at one stream count.
type bulkRun struct {
	Target         string    `json:"target"`
	Streams        int       `json:"streams"`
	BytesPerStream int64     `json:"bytes_per_stream"`
	Seconds        []float64 `json:"seconds"`       // each repetition: from the first dial to the last count read
	MBps           []float64 `json:"mb_per_second"` // each repetition, 10^6 bytes per second
	MedianMBps     float64   `json:"median_mb_per_second"`
	Errors         int       `json:"errors"`
	FirstError     string    `json:"first_error,omitempty"`
}

// bulkStreams are the stream counts of the bulk mode.
var bulkStreams = []int{1, 8}

// bulkChunk is the size of each write of a bulk stream.
const bulkChunk = 256 << 10

// runBulk sends a fixed number of bytes through each path to a sink that
// counts them and answers the count, so that a run ends only once every
// byte has arrived; the median of the repetitions is kept. The relay's
// figure is checked against the bare splice proxy's.
func (b *bench) runBulk(ctx context.Context) error {
	targets := []target{
		{targetDirect, tcpDialer(b.sink.addr())},
		{targetProxy, tcpDialer(b.proxySink.addr())},
		{targetRelay, relayDialer(b.dialer, b.name("sink"))},
	}
	chunk := bulkPattern()
	for _, streams := range bulkStreams {
		runs, err := bulkRuns(ctx, b.prog, targets, streams, b.sz.bulkBytes, b.sz.bulkReps, chunk)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if len(r.MBps) == 0 {
				return fmt.Errorf("%s, %d streams: every run failed: %s", r.Target, streams, r.FirstError)
			}
		}
		b.res.Bulk = append(b.res.Bulk, runs...)
	}
	b.bulkRows()
	return nil
}

// bulkPattern is the chunk every bulk stream sends, over and over.
func bulkPattern() []byte {
	chunk := make([]byte, bulkChunk)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	return chunk
}

// bulkRuns sends total bytes through each target, split over streams
// concurrent streams, reps times, the targets taking turns each
// repetition. Each run gets its median; a failed repetition is counted in
// Errors, and only the context's end stops the runs early.
func bulkRuns(ctx context.Context, prog *progress, targets []target, streams int, total int64, reps int, chunk []byte) ([]bulkRun, error) {
	per := total / int64(streams)
	runs := make([]bulkRun, len(targets))
	for i, t := range targets {
		runs[i] = bulkRun{Target: t.name, Streams: streams, BytesPerStream: per}
	}
	for rep := range reps {
		for i, t := range targets {
			label := fmt.Sprintf("bulk: %s, %d×%s, run %d/%d", t.name, streams, fmtMiB(per), rep+1, reps)
			prog.step("%s", label)
			el, err := sendBulk(ctx, t.dial, streams, per, chunk, prog, label)
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			r := &runs[i]
			if err != nil {
				if r.Errors++; r.Errors == 1 {
					r.FirstError = err.Error()
				}
				continue
			}
			r.Seconds = append(r.Seconds, el.Seconds())
			r.MBps = append(r.MBps, float64(per*int64(streams))/el.Seconds()/1e6)
		}
	}
	for i := range runs {
		runs[i].MedianMBps = median(runs[i].MBps)
	}
	return runs, nil
}

// sendBulk runs streams concurrent streams of per bytes each through dial
// and returns the time until every sink has confirmed its count.
func sendBulk(ctx context.Context, dial dialFunc, streams int, per int64, chunk []byte, p *progress, label string) (time.Duration, error) {
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	start := time.Now()
	stop := p.ticking(func() string {
		return fmt.Sprintf("%s: %s sent", label, fmtMiB(sent.Load()&^(1<<20-1)))
	})
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendStream(ctx, dial, per, chunk, &sent); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stop()
	return time.Since(start), errors.Join(errs...)
}

// sendStream dials, writes n bytes, half-closes, and checks the count the
// sink answers. Each write and the final read are bounded by ioTimeout,
// and ctx's end interrupts them.
func sendStream(ctx context.Context, dial dialFunc, n int64, chunk []byte, sent *atomic.Int64) error {
	c, err := dialBounded(ctx, dial)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for left := n; left > 0; {
		w := min(int64(len(chunk)), left)
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		m, err := c.Write(chunk[:w])
		left -= int64(m)
		sent.Add(int64(m))
		if err != nil {
			return fmt.Errorf("bulk write after %d of %d bytes: %w", n-left, n, err)
		}
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("bulk: %T cannot half-close", c)
	}
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("bulk half-close: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	var cnt [8]byte
	if _, err := io.ReadFull(c, cnt[:]); err != nil {
		return fmt.Errorf("bulk read count: %w", err)
	}
	if got := int64(binary.LittleEndian.Uint64(cnt[:])); got != n {
		return fmt.Errorf("bulk: sink counted %d bytes, %d sent", got, n)
	}
	return nil
}

// bulkAt returns the bulk run of target with streams streams.
func bulkAt(runs []bulkRun, target string, streams int) bulkRun {
	for _, r := range runs {
		if r.Target == target && r.Streams == streams {
			return r
		}
	}
	return bulkRun{}
}

// bulkRows adds a row per target and stream count, with the relay checked
// against the bare splice proxy.
func (b *bench) bulkRows() {
	for _, streams := range bulkStreams {
		direct := bulkAt(b.res.Bulk, targetDirect, streams)
		proxy := bulkAt(b.res.Bulk, targetProxy, streams)
		for _, name := range []string{targetDirect, targetProxy, targetRelay} {
			r := bulkAt(b.res.Bulk, name, streams)
			figs := fmt.Sprintf("%s (median of %d, %d×%s)", fmtMBps(r.MedianMBps*1e6), len(r.MBps), streams, fmtMiB(r.BytesPerStream))
			if r.Errors > 0 {
				figs += fmt.Sprintf("  (%d failed runs: %s)", r.Errors, r.FirstError)
			}
			rw := row{mode: "bulk", target: fmt.Sprintf("%s, %d stream%s", name, streams, plural(streams)), figures: figs}
			switch name {
			case targetProxy:
				rw.ratio = fmt.Sprintf("%.2f× direct", r.MedianMBps/direct.MedianMBps)
				b.addRow(rw)
			case targetRelay:
				vsProxy := r.MedianMBps / proxy.MedianMBps
				rw.ratio = fmt.Sprintf("%.2f× proxy, %.2f× direct", vsProxy, r.MedianMBps/direct.MedianMBps)
				rw.goal = "≥ 0.95× bare splice proxy"
				b.addCheck(rw, fmt.Sprintf("%.2f× proxy", vsProxy), vsProxy >= 0.95 && r.Errors == 0)
			default:
				b.addRow(rw)
			}
		}
	}
}

// plural returns "s" unless n is 1.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

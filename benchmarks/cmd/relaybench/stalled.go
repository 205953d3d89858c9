package main

import (
	"bufio"
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
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// The stalled mode measures what a listener that never reads its stream
// costs the other names of its relay: a healthy name's sequential dial
// latency before, and during, a flood of dials at the stalled name, until
// the relay drops the stalled stream at its write deadline.

// Sizes of the stalled mode.
const (
	stalledSndBuf  = 16 << 10             // the relay's send buffers: the stream stalls within a few hundred events
	stalledRcvBuf  = 1 << 10              // the stalled listener's receive buffer
	stalledFlooder = 24                   // concurrent dialers of the stalled name
	stalledGap     = 5 * time.Millisecond // between healthy dials, before and during alike
	stalledBound   = 30 * time.Second     // the longest flood
)

// stalledRun is the stalled mode's outcome.
type stalledRun struct {
	Before     latencyStats     `json:"before"` // healthy dials before the flood
	During     latencyStats     `json:"during"` // healthy dials during it
	P99Ratio   float64          `json:"p99_ratio"`
	Answers    map[string]int64 `json:"answers"`     // the flood's answers, by status
	DroppedSec float64          `json:"dropped_sec"` // flood start to the first 404: the stream dropped
}

// runStalled runs the stalled mode on a fresh in-process relay whose
// sockets have small send buffers (on loopback Linux autotunes them to
// 4 MiB, thousands of events, otherwise).
func (b *bench) runStalled(ctx context.Context) (err error) {
	if !b.relay.inProcess() {
		return errors.New("stalled mode needs the in-process relay (it sets the relay's socket buffers): drop -relay")
	}
	cfg := benchConfig(b.log)
	cfg.EventWriteTimeout = 500 * time.Millisecond
	cfg.EventQueue = 8
	cfg.CallbackTimeout = time.Second
	lc := net.ListenConfig{Control: sockBuf(syscall.SO_SNDBUF, stalledSndBuf)}
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("relay listen: %w", err)
	}
	relay, err := startRelayOn(cfg, ln)
	if err != nil {
		return err
	}
	defer func() {
		b.noteRelay(ctx, "stalled", relay)
		err = errors.Join(err, relay.close())
	}()
	healthy := b.name("healthy")
	echo, err := listenRelay(ctx, relay.addr, healthy, echoConn)
	if err != nil {
		return err
	}
	defer echo.close()
	dial := relayDialer(newDialer(relay.addr), healthy)
	if failed, err := runDials(ctx, dial, 1, 20); failed > 0 {
		return fmt.Errorf("warm-up: %d dials failed: %w", failed, err)
	}
	n := b.sz.stalledDials
	b.prog.step("stalled: %d healthy dials before", n)
	before, errs := stalledDials(ctx, dial, n, func() bool { return false })
	res := stalledRun{Before: summarize(before, errs), Answers: map[string]int64{}}

	stalled := b.name("stalled")
	sc, err := stalledListen(ctx, relay.addr, stalled)
	if err != nil {
		return err
	}
	defer sc.Close()
	b.prog.step("stalled: flood of %d dialers, healthy dials meanwhile", stalledFlooder)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // guards res.Answers
		gone    atomic.Bool
		dropped atomic.Int64
	)
	start := time.Now()
	stop := func() bool { return gone.Load() || time.Since(start) > stalledBound || ctx.Err() != nil }
	raw := "POST " + wire.PathDial + stalled + " HTTP/1.1\r\nHost: relay\r\nConnection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol +
		"\r\n" + wire.HeaderClientName + ": " + strings.Repeat("c", wire.MaxNameLen) + "\r\nContent-Length: 0\r\n\r\n" // big events fill the socket sooner
	for range stalledFlooder {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop() {
				status := stalledDial(relay.addr, raw)
				mu.Lock()
				res.Answers[fmt.Sprint(status)]++
				mu.Unlock()
				switch status {
				case http.StatusNotFound:
					dropped.CompareAndSwap(0, int64(time.Since(start)))
					gone.Store(true)
				case http.StatusServiceUnavailable:
					time.Sleep(20 * time.Millisecond) // a flood, not a busy loop
				}
			}
		}()
	}
	during, errs := stalledDials(ctx, dial, n, stop)
	wg.Wait()
	res.During = summarize(during, errs)
	res.DroppedSec = time.Duration(dropped.Load()).Seconds()
	if res.Before.P99US > 0 {
		res.P99Ratio = res.During.P99US / res.Before.P99US
	}
	b.res.Stalled = &res
	if !gone.Load() {
		return fmt.Errorf("the stalled stream was not dropped within %v of flood: %v", stalledBound, res.Answers)
	}
	figs := fmt.Sprintf("p50/p99 before %s/%s (%d), during %s/%s (%d); stream dropped after %.1fs",
		fmtUS(res.Before.P50US), fmtUS(res.Before.P99US), res.Before.N,
		fmtUS(res.During.P50US), fmtUS(res.During.P99US), res.During.N, res.DroppedSec)
	if e := res.Before.Errors + res.During.Errors; e > 0 {
		figs += fmt.Sprintf(" (%d errors)", e)
	}
	b.addCheck(row{mode: "stalled", target: "healthy name", figures: figs,
		ratio: fmt.Sprintf("p99 %.2f× before", res.P99Ratio),
		goal:  "p99 ≤ 3× before + 2ms, no errors"},
		fmt.Sprintf("%.2f×", res.P99Ratio),
		res.During.Errors == 0 && res.During.P99US <= 3*res.Before.P99US+2000)
	return nil
}

// stalledDials makes up to n sequential round trips through dial, stalledGap
// apart, until stop reports true, and returns their times and the errors.
func stalledDials(ctx context.Context, dial dialFunc, n int, stop func() bool) ([]time.Duration, int) {
	var samples []time.Duration
	errs := 0
	for range n {
		if stop() || ctx.Err() != nil {
			break
		}
		d, err := roundTrip(ctx, dial)
		if err != nil {
			errs++
		} else {
			samples = append(samples, d)
		}
		time.Sleep(stalledGap)
	}
	return samples, errs
}

// stalledListen registers name by hand with a small receive buffer and
// reads only the response head: nothing reads the stream after it.
func stalledListen(ctx context.Context, addr, name string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout, Control: sockBuf(syscall.SO_RCVBUF, stalledRcvBuf)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stalled listen: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	req := "POST " + wire.PathListen + name + " HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("stalled listen: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("stalled listen: %v, %v", resp, err)
	}
	return c, nil
}

// stalledDial sends one raw dial request and returns the answer's status,
// or 0 when none came within the callback deadline and ioTimeout.
func stalledDial(addr, raw string) int {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, raw); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	return resp.StatusCode
}

// sockBuf returns a dial or listen Control func that sets the socket
// option opt (SO_SNDBUF or SO_RCVBUF) to size before the connect or bind.
func sockBuf(opt, size int) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size)
		})
		return errors.Join(err, serr)
	}
}

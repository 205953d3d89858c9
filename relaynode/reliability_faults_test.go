package relaynode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestFaults is C4: faults injected by a proxy between the endpoints and the
// relay, mid-transfer. Each 1 MiB echo run must end byte-exact at both
// ends or with an error at both; a clean end is always byte-exact.
func TestFaults(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name      string
		cfg       relaynode.Config
		before    func(*relaytest.FaultProxy) // before the dial
		half      func(*relaytest.FaultProxy) // once half the bytes are written
		deadline  time.Duration               // on the endpoints' conns
		wantExact bool
	}{
		{name: "reset", half: (*relaytest.FaultProxy).ResetAll, deadline: 10 * time.Second},
		{name: "latency 20ms", before: func(p *relaytest.FaultProxy) { p.SetLatency(20 * time.Millisecond) }, deadline: 15 * time.Second, wantExact: true},
		{name: "latency set mid-transfer", half: func(p *relaytest.FaultProxy) { p.SetLatency(20 * time.Millisecond) }, deadline: 15 * time.Second, wantExact: true},
		{
			name:     "data limit 256KiB",
			before:   func(p *relaytest.FaultProxy) { p.SetDataLimit(256 << 10) },
			deadline: 10 * time.Second,
		},
		{
			name:     "blackhole",
			cfg:      relaynode.Config{Limits: actors.Limits{PairIdleTimeout: 500 * time.Millisecond}},
			half:     func(p *relaytest.FaultProxy) { p.Blackhole(true) },
			deadline: 5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			r := relaytest.Start(t, tt.cfg)
			p := relaytest.NewFaultProxy(t, r.Addr)
			t.Cleanup(func() { p.Blackhole(false) })
			ln, err := endpoints.ListenRelay("tcp", "c4", "http://"+p.Addr, endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			serverEnd := make(chan transferEnd, 1)
			relaytest.Serve(t, ln, func(c net.Conn) {
				_ = c.SetDeadline(time.Now().Add(tt.deadline))
				h := sha256.New()
				n, err := io.Copy(c, io.TeeReader(c, h))
				if err == nil {
					err = relaytest.HalfClose(c)
				}
				e := transferEnd{n: n, err: err, at: time.Now()}
				h.Sum(e.sum[:0])
				select {
				case serverEnd <- e:
				default:
					t.Errorf("a second conn was accepted")
				}
			})
			if tt.before != nil {
				tt.before(p)
			}
			payload := chachaBytes(4, size)
			want := sha256.Sum256(payload)
			d := endpoints.NewRelayDialer(p.Addr, "c4-client")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := d.DialContext(ctx, "tcp", "c4")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetDeadline(start.Add(tt.deadline))
			half := make(chan struct{})
			werr := make(chan error, 1)
			go func() {
				for off := 0; off < size; off += 32 << 10 {
					if off == size/2 {
						close(half)
					}
					if _, err := c.Write(payload[off : off+32<<10]); err != nil {
						werr <- err
						return
					}
					// Paced, so that the echo is flowing when the fault comes.
					time.Sleep(time.Millisecond)
				}
				werr <- relaytest.HalfClose(c)
			}()
			readEnd := make(chan transferEnd, 1)
			go func() {
				h := sha256.New()
				n, err := io.Copy(h, c)
				e := transferEnd{n: n, err: err}
				h.Sum(e.sum[:0])
				readEnd <- e
			}()
			if tt.half != nil {
				select {
				case <-half:
					tt.half(p)
				case err := <-werr:
					werr <- err
				}
			}
			client := <-readEnd
			client.err = errors.Join(client.err, <-werr)
			client.at = time.Now()
			var server transferEnd
			select {
			case server = <-serverEnd:
			case <-time.After(tt.deadline + 30*time.Second): // a bound against hangs
				t.Fatalf("the server's end never finished")
			}
			took := client.at.Sub(start)
			if server.at.After(client.at) {
				took = server.at.Sub(start)
			}

			outcome := func(side string, e transferEnd) string {
				switch {
				case e.err != nil:
					return fmt.Sprintf("%s error after %d bytes (%v)", side, e.n, e.err)
				case e.n == size && e.sum == want:
					return side + " byte-exact"
				default:
					return fmt.Sprintf("%s clean end after %d bytes, SHA-256 %x", side, e.n, e.sum[:4])
				}
			}
			rs := r.Node.Stats()
			t.Logf("C4 %s: %s; %s; ended in %v; relay cut %d pairs idle", tt.name, outcome("client", client), outcome("server", server), took.Round(time.Millisecond), rs.PairsIdle)
			var problems []string
			for side, e := range map[string]transferEnd{"client": client, "server": server} {
				if e.err == nil && (e.n != size || e.sum != want) {
					problems = append(problems, fmt.Sprintf("%s: silent truncation or corruption: clean end after %d of %d bytes", side, e.n, size))
				}
			}
			if (client.err == nil) != (server.err == nil) {
				problems = append(problems, "one end succeeded and the other failed")
			}
			if tt.wantExact && (client.err != nil || server.err != nil) {
				problems = append(problems, "want byte-exact at both ends")
			}
			p.Blackhole(false)
			relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Stats().Pairs == int64(0) }, "live pairs never returned to 0")
			for _, pr := range problems {
				t.Error(pr)
			}
		})
	}
}

// TestAbortReachesPeer is C4's rule on one leg, without a proxy: when one
// peer of a pair resets its connection mid-transfer, the other must read an
// error, never a clean EOF that passes a truncated stream off as whole.
func TestAbortReachesPeer(t *testing.T) {
	for _, resetter := range []string{"client", "server"} {
		t.Run(resetter+" resets", func(t *testing.T) {
			leakCheck(t)
			r := relaytest.Start(t, relaynode.Config{})
			ln, err := endpoints.ListenRelay("tcp", "abort", r.URL)
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			release := make(chan struct{})
			relaytest.Serve(t, ln, func(c net.Conn) {
				accepted <- c
				<-release
			})
			t.Cleanup(func() { close(release) })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := endpoints.NewRelayDialer(r.Addr, "").DialContext(ctx, "tcp", "abort")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var s net.Conn
			select {
			case s = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("no conn accepted")
			}
			// Mid-transfer: 64 KiB each way, all read.
			payload := chachaBytes(1, 64<<10)
			buf := make([]byte, len(payload))
			for _, leg := range [][2]net.Conn{{c, s}, {s, c}} {
				_ = leg[1].SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := leg[0].Write(payload); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(leg[1], buf); err != nil || !bytes.Equal(buf, payload) {
					t.Fatalf("mid-transfer read: %v", err)
				}
			}
			gone, peer := c, s
			if resetter == "server" {
				gone, peer = s, c
			}
			tc := gone.(*endpoints.Conn).NetConn().(*net.TCPConn)
			_ = tc.SetLinger(0)
			_ = tc.Close()
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := peer.Read(buf)
			t.Logf("C4 one leg reset by the %s: the peer's next read: %d bytes, %v", resetter, n, err)
			switch {
			case err == nil:
				t.Errorf("the peer read %d bytes after the reset", n)
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Errorf("the peer never heard of the reset: %v", err)
			case err == io.EOF:
				t.Errorf("the peer read a clean EOF: a stream cut short must reach it as an error")
			}
		})
	}
}

// TestBlackholedStream is D7: the registration stream's link goes silent.
// The listener finds it dead by missed heartbeats, a dial meanwhile fails
// without hanging, and the listener is back once the link is.
func TestBlackholedStream(t *testing.T) {
	leakCheck(t)
	r := relaytest.Start(t, relaynode.Config{Heartbeat: 100 * time.Millisecond, Limits: actors.Limits{CallbackTimeout: time.Second}})
	p := relaytest.NewFaultProxy(t, r.Addr)
	t.Cleanup(func() { p.Blackhole(false) })
	var changes atomic.Int64
	ln, err := endpoints.ListenRelay("tcp", "d7", "http://"+p.Addr,
		endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		endpoints.WithHandshakeTimeout(500*time.Millisecond),
		endpoints.WithStateFunc(func(endpoints.ListenerState) { changes.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	st := ln.(stater)
	loop := relaytest.Serve(t, ln, relaytest.Echo)
	d := endpoints.NewRelayDialer(r.Addr, "d7-client")
	if _, err := relaytest.PollPing(d, "d7", 5*time.Second); err != nil {
		t.Fatalf("dial before the blackhole: %v", err)
	}

	t0 := time.Now()
	p.Blackhole(true)
	relaytest.Eventually(t, 10*time.Second, func() bool { return !st.State().Connected }, "listener still connected through a silent link")
	detect := time.Since(t0)

	dialStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	c, err := d.DialContext(ctx, "tcp", "d7")
	cancel()
	dialTook := time.Since(dialStart)
	var re *endpoints.RelayError
	switch {
	case err == nil:
		c.Close()
		t.Errorf("a dial during the blackhole succeeded")
	case errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &re):
		t.Errorf("a dial during the blackhole hung for %v: %v", dialTook, err)
	case !errors.As(err, &re) || (re.Status != http.StatusGatewayTimeout && re.Status != http.StatusBadGateway):
		t.Errorf("a dial during the blackhole: %v; want 504 or 502", err)
	}

	t1 := time.Now()
	p.Blackhole(false)
	relaytest.Eventually(t, 5*time.Second, func() bool { return st.State().Connected }, "listener did not reconnect once the link was back")
	reconnect := time.Since(t1)
	s := st.State()
	if s.Reconnects < 1 {
		t.Errorf("State().Reconnects = %d, want >= 1", s.Reconnects)
	}
	if _, err := relaytest.PollPing(d, "d7", 5*time.Second); err != nil {
		t.Errorf("dial after the link came back: %v", err)
	}
	if errs := loop.AcceptErrs(); len(errs) > 0 {
		t.Errorf("Accept returned errors: %v", errs)
	}
	t.Logf("D7: silent link found dead after %v (heartbeat 100ms); dial meanwhile failed after %v: %v; reconnected %v after the link came back (reconnects %d, state changes %d, last error %v)",
		detect.Round(time.Millisecond), dialTook.Round(time.Millisecond), err, reconnect.Round(time.Millisecond), s.Reconnects, changes.Load(), s.LastError)
}

package endpoints_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// A hostile relay: a raw listener on 127.0.0.1 that reads each request
// head and then does whatever the case says. Every write loop is bounded
// by hostileMax bytes, and every connection by ioTimeout and cleanup.

const hostileMax = 64 << 20

// hostileTimeout is the handshake and dial timeout the cases set: the
// bound within which each must end with an error.
const hostileTimeout = 500 * time.Millisecond

type hostileRelay struct {
	addr string
}

// startHostile serves handle on each connection, with the request read.
func startHostile(t *testing.T, handle func(c net.Conn, req *http.Request)) *hostileRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relaytest.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		handle(c, req)
	})
	return &hostileRelay{addr: ln.Addr().String()}
}

// endless writes first, then chunk over and over, until the peer goes or
// hostileMax bytes are out.
func endless(c net.Conn, first, chunk string) {
	if _, err := io.WriteString(c, first); err != nil {
		return
	}
	for n := 0; n < hostileMax; n += len(chunk) {
		if _, err := io.WriteString(c, chunk); err != nil {
			return
		}
	}
}

// silence holds the connection open, writing nothing, until the peer
// closes it or ioTimeout passes.
func silence(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

const (
	hostile200 = "HTTP/1.1 200 OK\r\nRelay-Node: hostile\r\nContent-Type: text/event-stream\r\n\r\n"
	hostile101 = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\nRelay-Node: hostile\r\n"
)

func readyEvent(t *testing.T, heartbeatMillis int64) string {
	b, err := wire.AppendJSONEvent(nil, wire.EventReady, wire.ReadyEvent{Node: "hostile", Registration: wire.NewToken().String(), HeartbeatMillis: heartbeatMillis})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostileOpts() []endpoints.Option {
	return []endpoints.Option{endpoints.WithHandshakeTimeout(hostileTimeout), endpoints.WithDialTimeout(hostileTimeout),
		endpoints.WithBackoff(time.Hour, time.Hour)}
}

// TestHostileRelayDial: each hostile answer to a dial ends DialContext with
// a clear error: ErrProtocol for a broken or oversized head (the wrapped
// wire error shows the bound held), the dial timeout for silence.
func TestHostileRelayDial(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(c net.Conn, req *http.Request)
		want   []error
	}{
		{"malformed 101", func(c net.Conn, _ *http.Request) { io.WriteString(c, hostile101+"no colon here\r\n\r\n") },
			[]error{endpoints.ErrProtocol, wire.ErrBadUpgrade}},
		{"101 to another protocol", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
		}, []error{endpoints.ErrProtocol, wire.ErrBadUpgrade}},
		{"truncated 101, then close", func(c net.Conn, _ *http.Request) { io.WriteString(c, hostile101[:30]) },
			[]error{endpoints.ErrProtocol}},
		{"truncated 101, then silence", func(c net.Conn, _ *http.Request) { io.WriteString(c, hostile101); silence(c) },
			[]error{context.DeadlineExceeded}},
		{"endless header", func(c net.Conn, _ *http.Request) {
			endless(c, hostile101, "X-Filler: "+strings.Repeat("f", 100)+"\r\n")
		},
			[]error{endpoints.ErrProtocol, wire.ErrHeadTooLarge}},
		{"endless header line", func(c net.Conn, _ *http.Request) { endless(c, hostile101+"X: ", strings.Repeat("f", 1000)) },
			[]error{endpoints.ErrProtocol, wire.ErrHeadTooLarge}},
		{"endless refusal header", func(c net.Conn, _ *http.Request) {
			endless(c, "HTTP/1.1 503 Busy\r\nRelay-Node: hostile\r\n", "X-Filler: "+strings.Repeat("f", 100)+"\r\n")
		}, []error{endpoints.ErrProtocol, wire.ErrHeadTooLarge}},
		{"10 MB refusal body", func(c net.Conn, _ *http.Request) {
			endless(c, "HTTP/1.1 503 Busy\r\nRelay-Node: hostile\r\nContent-Length: 10485760\r\n\r\nbusy", strings.Repeat("b", 4096))
		}, nil}, // a *RelayError with the reason cut to wire.MaxReasonLen: checked below
		{"accept, then silence", func(c net.Conn, _ *http.Request) { silence(c) },
			[]error{context.DeadlineExceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, tc.handle)
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			c, err := endpoints.NewRelayDialer(h.addr, "c", hostileOpts()...).DialContext(ctx, "tcp", "svc")
			if c != nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if tc.want == nil {
				var re *endpoints.RelayError
				if !errors.As(err, &re) || re.Status != 503 || len(re.Reason) != wire.MaxReasonLen {
					t.Fatalf("dial: %v, want a *RelayError 503 with a %d-byte reason", err, wire.MaxReasonLen)
				}
				return
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("dial: %v, want %v", err, w)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("the dial outlived its own timeout: the test's context ended")
			}
		})
	}
}

// TestHostileRelayListen: each hostile answer to a registration ends
// ListenRelay with a clear error within the handshake timeout; the SSE
// reader's limits bound what a stream can make the client hold.
func TestHostileRelayListen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(c net.Conn, req *http.Request)
		want   []error
	}{
		{"malformed 200", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nRelay-Node: hostile\r\nContent-Length: zz\r\n\r\n")
		}, []error{endpoints.ErrProtocol}},
		{"truncated answer", func(c net.Conn, _ *http.Request) { io.WriteString(c, hostile200[:25]) },
			[]error{endpoints.ErrProtocol}},
		{"endless header", func(c net.Conn, _ *http.Request) {
			endless(c, "HTTP/1.1 200 OK\r\nRelay-Node: hostile\r\n", "X-Filler: "+strings.Repeat("f", 100)+"\r\n")
		}, []error{endpoints.ErrProtocol, wire.ErrHeadTooLarge}},
		{"SSE line that never ends", func(c net.Conn, _ *http.Request) { endless(c, hostile200+"data: ", strings.Repeat("d", 1000)) },
			[]error{wire.ErrLineTooLong}},
		{"10 MB event", func(c net.Conn, _ *http.Request) {
			endless(c, hostile200+"event: ready\n", "data: "+strings.Repeat("d", 1000)+"\n")
		}, []error{wire.ErrEventTooLarge}},
		{"bad JSON ready", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, hostile200+"event: ready\ndata: {\"node\":\n\n")
			silence(c)
		},
			[]error{wire.ErrBadEvent}},
		{"unknown first event", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, hostile200+"event: surprise\ndata: {}\n\n")
			silence(c)
		},
			[]error{endpoints.ErrProtocol}},
		{"heartbeats at 1 kHz, no ready", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, hostile200)
			for i := 0; i < 5000; i++ {
				if _, err := io.WriteString(c, ": hb\n"); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}, []error{context.DeadlineExceeded}},
		{"accept, then silence", func(c net.Conn, _ *http.Request) { silence(c) },
			[]error{context.DeadlineExceeded}},
		{"not a relay", func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		}, []error{endpoints.ErrNotRelay}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, tc.handle)
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			ln, err := endpoints.NewRelayListener(h.addr, hostileOpts()...).ListenContext(ctx, "tcp", "svc")
			if ln != nil {
				ln.Close()
				t.Fatal("listen succeeded")
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("listen: %v, want %v", err, w)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("the listen outlived its handshake timeout: the test's context ended")
			}
		})
	}
}

// TestHostileRelayStream registers on a hostile relay whose stream, after
// a valid ready event, sends bad JSON connect events, unknown event types
// and heartbeats at 1 kHz, then one good connect event. The bad events
// are counted as failed callbacks, the unknown ones passed over, and the
// good one still reaches Accept; a callback answered with a malformed 101
// is one more failure, and Accept goes on until Close.
func TestHostileRelayStream(t *testing.T) {
	tokA, tokB := wire.NewToken().String(), wire.NewToken().String()
	var callbacks sync.WaitGroup
	callbacks.Add(2)
	h := startHostile(t, func(c net.Conn, req *http.Request) {
		switch {
		case strings.HasPrefix(req.URL.Path, wire.PathListen):
			b := []byte(hostile200 + readyEvent(t, 60000))
			for range 3 {
				b = append(b, "event: connect\ndata: {not json\n\n"...)
			}
			b = append(b, "event: surprise\ndata: {\"x\":1}\n\n"...)
			if _, err := c.Write(b); err != nil {
				return
			}
			for range 1000 {
				if _, err := io.WriteString(c, ": hb\n"); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
			for _, tok := range []string{tokA, tokB} {
				b, _ = wire.AppendJSONEvent(nil, wire.EventConnect, wire.ConnectEvent{Token: tok, Client: "c", ClientAddr: "192.0.2.1:1",
					Callback: wire.PathAccept + tok, DeadlineUnixMilli: time.Now().Add(time.Minute).UnixMilli()})
				if _, err := c.Write(b); err != nil {
					return
				}
			}
			_ = c.SetDeadline(time.Time{})
			silence(c)
		case req.URL.Path == wire.PathAccept+tokA:
			defer callbacks.Done()
			io.WriteString(c, hostile101+"broken\r\n\r\n")
		case req.URL.Path == wire.PathAccept+tokB:
			defer callbacks.Done()
			io.WriteString(c, hostile101+"\r\nhello")
			silence(c)
		}
	})
	ln, err := endpoints.ListenRelay("tcp", "svc", h.addr, hostileOpts()...)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	c, err := acceptWithin(ln, ioTimeout)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	got := make([]byte, 5)
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Errorf("accepted conn read %q, %v; want hello", got, err)
	}
	c.Close()
	callbacks.Wait()
	rl := ln.(*endpoints.Listener)
	relaytest.Eventually(t, ioTimeout, func() bool { return rl.Failed() == 4 }, "failed callbacks never reached 4")
	if st := rl.State(); !st.Connected || st.Reconnects != 0 {
		t.Errorf("state %+v, want connected, no reconnects", st)
	}
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after Close: %v, want net.ErrClosed", err)
	}
}

// acceptWithin is Accept bounded by d: the listener is closed if it takes
// longer.
func acceptWithin(ln net.Listener, d time.Duration) (net.Conn, error) {
	t := time.AfterFunc(d, func() { ln.Close() })
	defer t.Stop()
	return ln.Accept()
}

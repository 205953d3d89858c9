package endpoints_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestEarlyData checks WithEarlyData over every transport, cold and warm:
// the bytes written right after Dial, before the relay has answered,
// reach the server, and its echo comes back; the relay's answer is not
// among the bytes the client reads. The warm dials find a parked callback.
func TestEarlyData(t *testing.T) {
	for _, tr := range transports {
		for _, warm := range []int{0, 2} {
			name := tr.name + "/cold"
			if warm > 0 {
				name = tr.name + "/warm"
			}
			t.Run(name, func(t *testing.T) {
				r, ln, d := newPairWith(t, tr, pairConfig{
					listenOpts: []endpoints.Option{endpoints.WithWarmPool(warm)},
					dialOpts:   []endpoints.Option{endpoints.WithEarlyData()},
				})
				serveEcho(t, ln)
				for i := range 3 {
					if warm > 0 {
						waitParked(t, r.Node, int64(warm))
					}
					ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
					c, err := d.DialContext(ctx, "tcp", serverName)
					cancel()
					if err != nil {
						t.Fatalf("dial %d: %v", i, err)
					}
					_ = c.SetDeadline(time.Now().Add(ioTimeout))
					msg := []byte("early hello " + strings.Repeat("x", i*1000))
					if _, err := c.Write(msg); err != nil {
						t.Fatalf("dial %d: write: %v", i, err)
					}
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(c, got); err != nil {
						t.Fatalf("dial %d: read the echo: %v", i, err)
					}
					if !bytes.Equal(got, msg) {
						t.Fatalf("dial %d: echo = %q, want %q", i, got[:min(len(got), 40)], msg[:min(len(msg), 40)])
					}
					c.Close()
				}
				if w, _ := splices(r.Node); warm > 0 && w != 3 {
					t.Errorf("warm splices = %d, want 3", w)
				}
			})
		}
	}
}

// TestEarlyDataRefusal checks where an early dial's refusal shows: Dial
// succeeds, and the first Read returns the *RelayError wrapped as Dial
// would have returned it, as does every Read after it, WriteTo, and every
// write from then on. An MTLS
// dial meets it in its handshake, so its DialContext fails as before.
func TestEarlyDataRefusal(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	d := endpoints.NewRelayDialer(r.Addr, clientName, endpoints.WithEarlyData())
	c, err := d.Dial("tcp", "nobody")
	if err != nil {
		t.Fatalf("early dial: %v, want a conn (the refusal comes with the first read)", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("write before the answer: %v", err)
	}
	_, err1 := c.Read(make([]byte, 8))
	checkRefused(t, "first read", err1, http.StatusNotFound)
	if !strings.HasPrefix(err1.Error(), `endpoints: dial "nobody": `) {
		t.Errorf("first read: %q, want Dial's wrap", err1)
	}
	_, err2 := c.Read(make([]byte, 8))
	if err2 != err1 {
		t.Errorf("second read: %v, want the same refusal %v", err2, err1)
	}
	if _, err := io.Copy(io.Discard, c); err != err1 {
		t.Errorf("WriteTo: %v, want the refusal %v", err, err1)
	}
	if _, err := c.Write([]byte("more")); err != err1 {
		t.Errorf("write after the refusal: %v, want the refusal %v", err, err1)
	}
	if _, err := io.Copy(c, io.LimitReader(strings.NewReader("more"), 4)); err != err1 {
		t.Errorf("ReadFrom after the refusal: %v, want the refusal %v", err, err1)
	}

	md := endpoints.NewRelayMTLSDialer(r.Addr, clientName, endpoints.WithEarlyData())
	_, err = md.Dial("tcp", "nobody", sharedPKI(t).clientConfig())
	checkRefused(t, "mtls early dial", err, http.StatusNotFound)
}

// TestEarlyDataDeadline checks that the wait for an early dial's answer is
// the read deadline's: a Read that times out while the answer is half
// there returns a timeout, and the next Read goes on from the bytes
// already read, to the 101 and the bytes behind it. The bytes written
// before the answer reached the relay behind the request.
func TestEarlyDataDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answer := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol + "\r\n\r\nfrom the server"
	half := len(answer) / 3
	release := make(chan struct{})
	early := make(chan string, 1)
	relaytest.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || !strings.HasPrefix(req.URL.Path, wire.PathDial) {
			early <- "bad request"
			return
		}
		b := make([]byte, len("ping"))
		_, err = io.ReadFull(br, b)
		if err != nil {
			early <- "no early bytes: " + err.Error()
			return
		}
		early <- string(b)
		_, _ = io.WriteString(c, answer[:half])
		select {
		case <-release:
		case <-time.After(ioTimeout):
			return
		}
		_, _ = io.WriteString(c, answer[half:])
		_, _ = io.Copy(io.Discard, c)
	})

	c, err := endpoints.NewRelayDialer(ln.Addr().String(), clientName, endpoints.WithEarlyData()).Dial("tcp", serverName)
	if err != nil {
		t.Fatalf("early dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-early:
		if got != "ping" {
			t.Fatalf("relay read %q behind the request, want %q", got, "ping")
		}
	case <-time.After(ioTimeout):
		t.Fatal("the relay never read the early bytes")
	}

	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 64))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read before the answer: %v, want a timeout", err)
	}

	close(release)
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	got := make([]byte, len("from the server"))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read after the answer: %v", err)
	}
	if string(got) != "from the server" {
		t.Fatalf("read %q, want the bytes behind the 101", got)
	}
}

// checkRefused fails the test unless err carries a *RelayError of status.
func checkRefused(t *testing.T, what string, err error, status int) {
	t.Helper()
	var re *endpoints.RelayError
	if !errors.As(err, &re) || re.Status != status {
		t.Fatalf("%s: %v, want a *RelayError with status %d", what, err, status)
	}
}

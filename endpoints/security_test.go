package endpoints_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// checkRawPair checks that a dialed conn and a raw server's 101 conn are
// spliced byte for byte, both ways, and end cleanly.
func checkRawPair(t testing.TB, client, server net.Conn, serverR io.Reader) {
	t.Helper()
	up := randomBytes(rand.Uint64(), 64<<10)
	down := randomBytes(rand.Uint64(), 64<<10)
	_ = client.SetDeadline(time.Now().Add(ioTimeout))
	_ = server.SetDeadline(time.Now().Add(ioTimeout))
	werr := make(chan error, 2)
	go func() {
		_, err := client.Write(up)
		if err == nil {
			err = client.(closeWriter).CloseWrite()
		}
		werr <- err
	}()
	go func() {
		_, err := server.Write(down)
		if err == nil {
			err = server.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	readExactlyThenEOF(t, "raw server", serverR, up)
	readExactlyThenEOF(t, "client", client, down)
	for range 2 {
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// TestRandomTokens is S1: during a genuine pending dial, callbacks with
// random tokens and the genuine registration id are all refused 404 before
// any hijack; then the genuine callback wins and the pair is byte-exact.
func TestRandomTokens(t *testing.T) {
	n := scaled(10000, 2000)
	const workers = 4
	// The genuine dial must outlive the flood.
	r := relaytest.Start(t, relaynode.Config{Limits: actors.Limits{CallbackTimeout: 3 * time.Minute}})
	raw := rawListen(t, r.Addr, serverName)
	dialed := goDial(t, context.Background(), tcpTransport.dialer(t, r, clientName))
	ce := raw.nextConnect(t)

	var (
		mu       sync.Mutex // guards statuses
		statuses = make(map[int]int)
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				tok := wire.NewToken().String()
				if tok == ce.Token {
					continue
				}
				status, conn, _ := rawAccept(t, r.Addr, tok, raw.regID, nil)
				if conn != nil {
					conn.Close()
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				if status != http.StatusNotFound {
					return // reported below; stop this worker early
				}
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusNotFound] != n || len(statuses) != 1 {
		t.Fatalf("random-token callbacks answered %v, want %d × 404", statuses, n)
	}
	if got := r.Node.Stats().Actors.Spliced; got != 0 {
		t.Fatalf("relay spliced %d pairs during the flood, want 0", got)
	}
	select {
	case dr := <-dialed:
		t.Fatalf("the genuine dial ended during the flood: %v", dr.err)
	default:
	}

	status, sconn, sbr := rawAccept(t, r.Addr, ce.Token, raw.regID, nil)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("genuine callback: status %d, want 101", status)
	}
	dr := waitDial(t, dialed, ioTimeout)
	if dr.err != nil {
		t.Fatalf("genuine dial: %v", dr.err)
	}
	checkRawPair(t, dr.c, sconn, sbr)
}

// TestTokenReplay is S2: one genuine token presented by several callbacks
// at once: exactly one 101; the rest, and a later replay, are refused.
func TestTokenReplay(t *testing.T) {
	const racers = 8
	r := relaytest.Start(t, relaynode.Config{})
	raw := rawListen(t, r.Addr, serverName)
	dialed := goDial(t, context.Background(), tcpTransport.dialer(t, r, clientName))
	ce := raw.nextConnect(t)

	type result struct {
		status int
		conn   net.Conn
		br     io.Reader
	}
	results := make(chan result, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, conn, br := rawAccept(t, r.Addr, ce.Token, raw.regID, nil)
			results <- result{status, conn, br}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var winner *result
	counts := make(map[int]int)
	for res := range results {
		counts[res.status]++
		switch res.status {
		case http.StatusSwitchingProtocols:
			winner = &res
		case http.StatusGone, http.StatusNotFound:
		default:
			t.Errorf("racing callback: status %d, want 101, 410 or 404", res.status)
		}
	}
	if counts[http.StatusSwitchingProtocols] != 1 {
		t.Fatalf("racing callbacks answered %v: want exactly one 101", counts)
	}
	if status, conn, _ := rawAccept(t, r.Addr, ce.Token, raw.regID, nil); status != http.StatusGone {
		if conn != nil {
			conn.Close()
		}
		t.Errorf("replay after the race: status %d, want 410", status)
	}

	dr := waitDial(t, dialed, ioTimeout)
	if dr.err != nil {
		t.Fatalf("dial: %v", dr.err)
	}
	checkRawPair(t, dr.c, winner.conn, winner.br)
	if got := r.Node.Stats().Actors.Spliced; got != 1 {
		t.Errorf("relay spliced %d pairs, want 1", got)
	}
}

// TestForeignToken is S3: a token presented with another registration's id
// is refused 403 and stays unspent, so the genuine callback still wins.
func TestForeignToken(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	a := rawListen(t, r.Addr, serverName)
	b := rawListen(t, r.Addr, "other")
	dialed := goDial(t, context.Background(), tcpTransport.dialer(t, r, clientName))
	ce := a.nextConnect(t)

	status, conn, _ := rawAccept(t, r.Addr, ce.Token, b.regID, nil)
	if conn != nil {
		conn.Close()
	}
	if status != http.StatusForbidden {
		t.Fatalf("A's token with B's registration: status %d, want 403", status)
	}
	if got := r.Node.Stats().Actors.ForeignToken; got != 1 {
		t.Errorf("relay counted %d foreign tokens, want 1", got)
	}
	status, sconn, sbr := rawAccept(t, r.Addr, ce.Token, a.regID, nil)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("A's genuine callback after the foreign attempt: status %d, want 101", status)
	}
	dr := waitDial(t, dialed, ioTimeout)
	if dr.err != nil {
		t.Fatalf("dial: %v", dr.err)
	}
	checkRawPair(t, dr.c, sconn, sbr)
}

// TestLateCallback is S4: a server that never calls back makes the dial
// fail with 504 at the relay's deadline; the late callback is refused.
func TestLateCallback(t *testing.T) {
	const callbackTimeout = 300 * time.Millisecond
	r := relaytest.Start(t, relaynode.Config{Limits: actors.Limits{CallbackTimeout: callbackTimeout}})
	raw := rawListen(t, r.Addr, serverName)
	start := time.Now() // before the dial: its 504 cannot come sooner than callbackTimeout after it
	dialed := goDial(t, context.Background(), tcpTransport.dialer(t, r, clientName))
	ce := raw.nextConnect(t)

	dr := waitDial(t, dialed, callbackTimeout+ioTimeout) // a bound against hangs
	elapsed := time.Since(start)
	var re *endpoints.RelayError
	if !errors.As(dr.err, &re) {
		t.Fatalf("dial: %v (%T), want a *endpoints.RelayError", dr.err, dr.err)
	}
	if re.Status != http.StatusGatewayTimeout || !re.Timeout() {
		t.Errorf("dial: status %d, Timeout() %v; want 504 and true", re.Status, re.Timeout())
	}
	var ne net.Error
	if !errors.As(dr.err, &ne) || !ne.Timeout() {
		t.Errorf("dial error %v is not a net.Error with Timeout()", dr.err)
	}
	if elapsed < callbackTimeout {
		t.Errorf("dial failed after %v, before the callback deadline %v", elapsed, callbackTimeout)
	}

	status, conn, _ := rawAccept(t, r.Addr, ce.Token, raw.regID, nil)
	if conn != nil {
		conn.Close()
	}
	if status != http.StatusGone && status != http.StatusNotFound {
		t.Errorf("late callback: status %d, want 410 or 404", status)
	}
	if got := r.Node.Stats().Actors.Expired; got != 1 {
		t.Errorf("relay counted %d expired dials, want 1", got)
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return liveActors(r, actors.KindPending) == 0 },
		"pending dial still live after its deadline")
}

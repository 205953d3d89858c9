package relaynode_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestShutdownDrain is C2: Shutdown with pairs mid-transfer. Pairs that
// finish within the grace period are byte-exact; endless pairs are cut,
// never before the grace period ends; new dials meanwhile are refused.
func TestShutdownDrain(t *testing.T) {
	t.Run("finishing and endless pairs", func(t *testing.T) { testShutdown(t, 3) })
	t.Run("finishing pairs only", func(t *testing.T) { testShutdown(t, 0) })
}

func testShutdown(t *testing.T, endless int) {
	leakCheck(t)
	const (
		finishing = 3
		size      = 4 << 20
		piece     = 128 << 10
		grace     = 1500 * time.Millisecond
		hang      = 30 * time.Second // a bound against hangs, not a timing
	)
	r := relaytest.Start(t, relaynode.Config{})
	ln, err := endpoints.ListenRelay("tcp", "c2", r.URL, endpoints.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st := ln.(stater)
	total := finishing + endless
	serverEnds := make(chan transferEnd, total)
	relaytest.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		var kind [1]byte
		if _, err := io.ReadFull(c, kind[:]); err != nil {
			serverEnds <- transferEnd{err: err, at: time.Now()}
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		e := transferEnd{kind: kind[0], n: n, err: err, at: time.Now()}
		h.Sum(e.sum[:0])
		if err == nil {
			if _, err := c.Write(e.sum[:]); err == nil {
				_ = relaytest.HalfClose(c)
			}
		}
		serverEnds <- e
	})

	d := endpoints.NewRelayDialer(r.Addr, "c2-client")
	clientEnds := make(chan transferEnd, total)
	started := make(chan struct{}, total)
	resume := make(chan struct{}) // closed once Shutdown has begun
	resumeNow := sync.OnceFunc(func() { close(resume) })
	var clients sync.WaitGroup
	for i := range total {
		kind := byte('F')
		if i >= finishing {
			kind = 'E'
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(ctx, "tcp", "c2")
		cancel()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		clients.Add(1)
		go func() {
			defer clients.Done()
			defer c.Close()
			if _, err := c.Write([]byte{kind}); err != nil {
				started <- struct{}{}
				clientEnds <- transferEnd{kind: kind, err: err, at: time.Now()}
				return
			}
			if kind == 'E' {
				f := relaytest.StartFlow(c)
				started <- struct{}{}
				err := <-f.Done()
				clientEnds <- transferEnd{kind: kind, err: err, at: time.Now()}
				return
			}
			// Half before Shutdown, the rest once it has begun: these
			// pairs are mid-transfer during the drain, and finish soon.
			payload := chachaBytes(uint64(i), size)
			e := transferEnd{kind: kind}
			for off := 0; off < size && e.err == nil; off += piece {
				if off == size/2 {
					started <- struct{}{}
					select {
					case <-resume:
					case <-time.After(15 * time.Second):
					}
				}
				_, e.err = c.Write(payload[off : off+piece])
			}
			if e.err == nil {
				e.err = relaytest.HalfClose(c)
			}
			if e.err == nil {
				var got []byte
				got, e.err = io.ReadAll(c)
				e.n = int64(copy(e.sum[:], got))
				if e.err == nil && sha256.Sum256(payload) != e.sum {
					e.err = fmt.Errorf("server saw %x (%d bytes back), sent %x", e.sum, len(got), sha256.Sum256(payload))
				}
			}
			e.at = time.Now()
			clientEnds <- e
		}()
	}
	t.Cleanup(clients.Wait)
	t.Cleanup(resumeNow)
	for range total {
		<-started
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Stats().Pairs == int64(total) }, "pairs not all spliced")

	shutStart := time.Now() // before the context: no cut can come before shutStart+grace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- r.Node.Shutdown(ctx) }()

	// The listener hears the drain, so the relay is draining by then: a
	// dial that reaches the handler is refused 503.
	relaytest.Eventually(t, 10*time.Second, func() bool { return !st.State().Connected }, "listener never heard the drain")
	resumeNow()
	resumedAt := time.Now()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, wire.PathDial+"c2", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", wire.UpgradeProtocol)
	r.Node.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("dial request during the drain: %d %q, want 503", rec.Code, rec.Body)
	}

	// New dials while Shutdown runs.
	var refused503, connErrs int
	var shutErr error
	var shutTook time.Duration
	for done := false; !done; {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := d.DialContext(dctx, "tcp", "c2")
		dcancel()
		var re *endpoints.RelayError
		switch {
		case err == nil:
			c.Close()
			t.Errorf("a dial during the drain succeeded")
		case errors.As(err, &re) && re.Status == http.StatusServiceUnavailable:
			refused503++
		case errors.As(err, &re), errors.Is(err, context.DeadlineExceeded):
			t.Errorf("a dial during the drain: %v; want 503 or a connection error", err)
		default:
			connErrs++
		}
		select {
		case shutErr = <-shut:
			shutTook = time.Since(shutStart)
			done = true
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(shutStart) > grace+hang {
			t.Fatalf("Shutdown has not returned after %v", time.Since(shutStart))
		}
	}

	if endless > 0 {
		if !errors.Is(shutErr, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want context.DeadlineExceeded: pairs had to be cut", shutErr)
		}
	} else if shutErr != nil {
		t.Errorf("Shutdown = %v, want nil: every pair finished", shutErr)
	}

	collect := func(ch chan transferEnd, side string) []transferEnd {
		var out []transferEnd
		timeout := time.After(grace + hang)
		for range total {
			select {
			case e := <-ch:
				out = append(out, e)
			case <-timeout:
				t.Fatalf("%s ends: %d of %d after Shutdown", side, len(out), total)
			}
		}
		return out
	}
	var serverFinishing int
	var cutEOF, cutErr int // how the ends of endless pairs saw the cut
	for _, e := range collect(serverEnds, "server") {
		switch e.kind {
		case 'F':
			serverFinishing++
			if e.err != nil || e.n != size {
				t.Errorf("server end of a finishing pair: %d bytes, %v; want %d and EOF", e.n, e.err, size)
			}
		case 'E':
			if e.err == nil {
				cutEOF++
			} else {
				cutErr++
			}
			if after := e.at.Sub(shutStart); after < grace {
				t.Errorf("server end of an endless pair ended %v after Shutdown began, before the grace period %v ended", after, grace)
			}
		default:
			t.Errorf("server end of unknown kind: %v", e.err)
		}
	}
	var lastCut, lastFinish time.Duration
	for _, e := range collect(clientEnds, "client") {
		after := e.at.Sub(shutStart)
		switch e.kind {
		case 'F':
			lastFinish = max(lastFinish, e.at.Sub(resumedAt))
			if e.err != nil {
				t.Errorf("finishing pair, client: %v", e.err)
			}
		case 'E':
			lastCut = max(lastCut, after)
			if errors.Is(e.err, io.EOF) {
				cutEOF++
			} else {
				cutErr++
			}
			if e.err == nil {
				t.Errorf("endless pair, client: ended without error or EOF")
			}
			if after < grace {
				t.Errorf("endless pair, client ended %v after Shutdown began, before the grace period %v ended", after, grace)
			}
		}
	}
	if serverFinishing != finishing {
		t.Errorf("%d finishing pairs reached the server's end, want %d", serverFinishing, finishing)
	}
	t.Logf("C2: %d finishing (done %v after their second half began) + %d endless pairs: Shutdown(%v) = %v after %v; endless pairs cut by %v (ends saw %d EOF, %d errors); dials during the drain: %d refused 503, %d connection errors, handler answered %d %q",
		finishing, lastFinish.Round(time.Millisecond), endless, grace, shutErr, shutTook.Round(time.Millisecond), lastCut.Round(time.Millisecond), cutEOF, cutErr, refused503, connErrs, rec.Code, strings.TrimSpace(rec.Body.String()))
}

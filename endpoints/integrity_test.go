package endpoints_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// fdsPerPair bounds what one relayed pair costs this process, which holds
// all of it: the client's and the server's sockets, the relay's two, and,
// while bytes flow, one splice pipe (two fds) per direction: 8, plus margin.
const fdsPerPair = 10

// TestConcurrentPairs is I1: N pairs at once, M random bytes each way, the
// SHA-256 of every stream compared at the receiving end; afterwards the
// sockets, goroutines and engine actors are back to their baseline.
func TestConcurrentPairs(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testConcurrentPairs(t, tr) })
	}
}

func testConcurrentPairs(t *testing.T, tr transport) {
	// TLS under the race detector is slow: the TLS transports move half
	// the bytes per pair there.
	n := scaled(1000, 64)
	size := tr.scaled(1<<20, 256<<10, 1)
	if tr.usesTLS() && (raceOn || testing.Short()) {
		size = 128 << 10
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if fit := int(lim.Cur)/fdsPerPair - 100; fit < n {
			t.Logf("RLIMIT_NOFILE %d: scaling %d pairs down to %d", lim.Cur, n, fit)
			n = max(fit, 1)
		}
	}
	t.Logf("%d pairs, %d bytes each way", n, size)
	const bound = 3 * time.Minute // against hangs only

	r, ln, d := newPairWith(t, tr, pairConfig{
		relay: relaynode.Config{Limits: actors.Limits{EventQueue: 2048, MaxPendingPerName: 2048, CallbackTimeout: bound}},
		listenOpts: []endpoints.Option{
			endpoints.WithCallbackWorkers(64),
			endpoints.WithAcceptBacklog(n),
			endpoints.WithHandshakeTimeout(bound),
		},
	})

	type ends struct{ clientSent, clientRecv, serverSent, serverRecv stream }
	var (
		mu      sync.Mutex // guards results, seen and errs
		results = make([]ends, n)
		seen    = make([]bool, n)
		errs    []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	seed := rand.Uint64()
	var handled, dialed atomic.Int64
	srv := serve(t, ln, func(c net.Conn) {
		defer handled.Add(1)
		_ = c.SetDeadline(time.Now().Add(bound))
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			fail(fmt.Errorf("server: read pair index: %w", err))
			return
		}
		i := binary.BigEndian.Uint64(hdr[:])
		if i >= uint64(n) {
			fail(fmt.Errorf("server: pair index %d out of range", i))
			return
		}
		sent, recv, err := shuttle(c, seed^(i<<1|1), size)
		mu.Lock()
		defer mu.Unlock()
		if seen[i] {
			errs = append(errs, fmt.Errorf("server: pair %d accepted twice", i))
			return
		}
		seen[i] = true
		results[i].serverSent, results[i].serverRecv = sent, recv
		if err != nil {
			errs = append(errs, fmt.Errorf("server: pair %d: %w", i, err))
		}
	})
	baseSockets := relaytest.Sockets(t)
	baseGoroutines := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(ctx, "tcp", serverName)
			if err != nil {
				fail(fmt.Errorf("client %d: %w", i, err))
				return
			}
			dialed.Add(1)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(bound))
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], uint64(i))
			if _, err := c.Write(hdr[:]); err != nil {
				fail(fmt.Errorf("client %d: write index: %w", i, err))
				return
			}
			sent, recv, err := shuttle(c, seed^uint64(i)<<1, size)
			mu.Lock()
			results[i].clientSent, results[i].clientRecv = sent, recv
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("client %d: %w", i, err))
			}
		}()
	}
	wg.Wait()
	relaytest.Eventually(t, 30*time.Second, func() bool { return handled.Load() >= dialed.Load() },
		"server handlers did not all finish")

	mu.Lock()
	for i, err := range errs {
		if i == 10 {
			t.Errorf("... and %d more errors", len(errs)-10)
			break
		}
		t.Error(err)
	}
	mismatches := 0
	for i, e := range results {
		up := e.clientSent == e.serverRecv && e.clientSent.n == int64(size)
		down := e.serverSent == e.clientRecv && e.serverSent.n == int64(size)
		if !up || !down {
			if mismatches < 10 {
				t.Errorf("pair %d: client→server %d bytes %x, server got %d bytes %x; server→client %d bytes %x, client got %d bytes %x",
					i, e.clientSent.n, e.clientSent.sum[:4], e.serverRecv.n, e.serverRecv.sum[:4],
					e.serverSent.n, e.serverSent.sum[:4], e.clientRecv.n, e.clientRecv.sum[:4])
			}
			mismatches++
		}
	}
	mu.Unlock()
	if mismatches > 0 || t.Failed() {
		t.Fatalf("%d of %d pairs mismatched", mismatches, n)
	}

	relaytest.SocketsBack(t, baseSockets, 30*time.Second)
	waitEngineIdle(t, r, 30*time.Second)
	relaytest.Eventually(t, 30*time.Second, func() bool { return runtime.NumGoroutine() <= baseGoroutines },
		fmt.Sprintf("goroutines: %d, baseline %d", runtime.NumGoroutine(), baseGoroutines))
	st := r.Node.Stats().Actors
	if st.Spliced != int64(n) {
		t.Errorf("relay spliced %d pairs, want %d", st.Spliced, n)
	}
	// The relay counts the bytes it copies: the plaintext exactly, or,
	// over MTLS, the TLS records, which hold the plaintext and more.
	checkBytes := func(what string, got, want int64) {
		if tr.mtls && got < want {
			t.Errorf("relay counted %d bytes to %s, want at least the %d bytes of plaintext", got, what, want)
		} else if !tr.mtls && got != want {
			t.Errorf("relay counted %d bytes to %s, want %d", got, what, want)
		}
	}
	checkBytes("servers", st.BytesToServer, int64(n)*int64(size+8))
	checkBytes("clients", st.BytesToClient, int64(n)*int64(size))
	if got := srv.Accepted(); got != int64(n) {
		t.Errorf("accepted %d conns, want %d", got, n)
	}
	if f := ln.(failedCounter).Failed(); f != 0 {
		t.Errorf("listener Failed() = %d, want 0", f)
	}
}

// TestHalfClose is I2: one side sends 8 MiB and half-closes; the other
// reads to EOF, answers 1 MiB and closes; the first reads exactly that and
// EOF. Both orders.
func TestHalfClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("client-first", func(t *testing.T) { testHalfClose(t, tr, true) })
			t.Run("server-first", func(t *testing.T) { testHalfClose(t, tr, false) })
		})
	}
}

func testHalfClose(t *testing.T, tr transport, clientFirst bool) {
	_, ln, d := newPair(t, tr)
	big := randomBytes(rand.Uint64(), 8<<20)
	small := randomBytes(rand.Uint64(), 1<<20)

	// first sends big and half-closes, then reads small and EOF.
	first := func(c net.Conn) error {
		cw, ok := c.(closeWriter)
		if !ok {
			return fmt.Errorf("%T has no CloseWrite", c)
		}
		if _, err := c.Write(big); err != nil {
			return fmt.Errorf("write 8 MiB: %w", err)
		}
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("CloseWrite: %w", err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if !bytes.Equal(got, small) {
			return fmt.Errorf("reply: got %d bytes, want %d (first diff at %d)", len(got), len(small), firstDiff(got, small))
		}
		return nil
	}
	// second reads to EOF, checks, answers small and returns; the caller
	// closes.
	second := func(c net.Conn) error {
		if _, ok := c.(closeWriter); !ok {
			return fmt.Errorf("%T has no CloseWrite", c)
		}
		h := sha256.New()
		got, err := io.ReadAll(io.TeeReader(c, h))
		if err != nil {
			return fmt.Errorf("read to EOF: %w", err)
		}
		if len(got) != len(big) || [32]byte(h.Sum(nil)) != sha256.Sum256(big) {
			return fmt.Errorf("got %d bytes, want %d, hash mismatch (first diff at %d)", len(got), len(big), firstDiff(got, big))
		}
		if _, err := c.Write(small); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
		return nil
	}

	srvErr := make(chan error, 1)
	serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if clientFirst {
			srvErr <- second(c)
		} else {
			srvErr <- first(c)
		}
	})
	c, err := d.Dial("tcp", serverName)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var cliErr error
	if clientFirst {
		cliErr = first(c)
	} else {
		cliErr = second(c)
		c.Close()
	}
	if cliErr != nil {
		t.Errorf("client: %v", cliErr)
	}
	select {
	case err := <-srvErr:
		if err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("server did not finish")
	}
}

// TestEarlyBytes is I3: bytes sent in the same write as a request, or
// right behind a 101, arrive intact and in order.
func TestEarlyBytes(t *testing.T) {
	payload := randomBytes(rand.Uint64(), 64<<10)

	// The raw-protocol cases speak plain HTTP to the relay.
	t.Run("dial-request-with-payload", func(t *testing.T) {
		r, ln, _ := newPair(t, tcpTransport)
		status, conn, br := rawDial(t, r.Addr, serverName, "raw-client", payload, nil)
		if status != 101 {
			t.Fatalf("raw dial: status %d, want 101", status)
		}
		sc := acceptOne(t, ln)
		_ = sc.SetDeadline(time.Now().Add(ioTimeout))
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		readExactlyThenEOF(t, "accepted conn", sc, payload)
		if _, err := sc.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		sc.Close()
		readExactlyThenEOF(t, "raw client", br, []byte("pong"))
	})

	t.Run("callback-with-payload", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		raw := rawListen(t, r.Addr, serverName)
		dialed := goDial(t, context.Background(), tcpTransport.dialer(t, r, clientName))
		ce := raw.nextConnect(t)
		if ce.Client != clientName {
			t.Errorf("connect event client %q, want %q", ce.Client, clientName)
		}
		status, sconn, sbr := rawAccept(t, r.Addr, ce.Token, raw.regID, payload)
		if status != 101 {
			t.Fatalf("raw accept: status %d, want 101", status)
		}
		dr := waitDial(t, dialed, ioTimeout)
		if dr.err != nil {
			t.Fatalf("dial: %v", dr.err)
		}
		_ = dr.c.SetDeadline(time.Now().Add(ioTimeout))
		if err := sconn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		readExactlyThenEOF(t, "dialed conn", dr.c, payload)
		if _, err := dr.c.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		dr.c.Close()
		readExactlyThenEOF(t, "raw server", sbr, []byte("pong"))
	})

	t.Run("101-read-late", func(t *testing.T) {
		// The raw client reads the 101 only after the server's write has
		// returned, so the payload is already queued behind the 101.
		r, ln, _ := newPair(t, tcpTransport)
		written := make(chan struct{})
		srvErr := make(chan error, 1)
		serve(t, ln, func(c net.Conn) {
			_, err := c.Write(payload)
			close(written)
			if err == nil {
				err = c.(closeWriter).CloseWrite()
			}
			srvErr <- err
			_, _ = io.Copy(io.Discard, c)
		})
		status, conn, br := rawDial(t, r.Addr, serverName, "raw-client", nil, written)
		if status != 101 {
			t.Fatalf("raw dial: status %d, want 101", status)
		}
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		readExactlyThenEOF(t, "raw client", br, payload)
		if err := <-srvErr; err != nil {
			t.Fatalf("server: %v", err)
		}
	})

	for _, tr := range transports {
		t.Run("write-on-accept/"+tr.name, func(t *testing.T) {
			_, ln, d := newPair(t, tr)
			srvErr := make(chan error, 1)
			serve(t, ln, func(c net.Conn) {
				_, err := c.Write(payload)
				if err == nil {
					err = c.(closeWriter).CloseWrite()
				}
				srvErr <- err
				_, _ = io.Copy(io.Discard, c)
			})
			c, err := d.Dial("tcp", serverName)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			readExactlyThenEOF(t, "dialed conn", c, payload)
			if err := <-srvErr; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}

	// A stand-in relay puts the payload in the same write as its 101, so
	// the endpoints must serve it from the bytes buffered with the answer.
	t.Run("fake-relay/dial", func(t *testing.T) {
		c := dialFakeRelay(t, payload)
		readExactlyThenEOF(t, "dialed conn", c, payload)
	})
	t.Run("fake-relay/accept", func(t *testing.T) {
		fr := startFakeRelay(t, payload)
		ln, err := endpoints.ListenRelay("tcp", serverName, "http://"+fr.addr)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer ln.Close()
		c := acceptOne(t, ln)
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		if got := c.RemoteAddr().String(); got != fakeClientAddr {
			t.Errorf("RemoteAddr %q, want %q", got, fakeClientAddr)
		}
		if got := c.(*endpoints.Conn).ClientName(); got != clientName {
			t.Errorf("ClientName %q, want %q", got, clientName)
		}
		readExactlyThenEOF(t, "accepted conn", c, payload)
	})
}

// TestSequentialDials is I5: many dials one after the other, each echoing
// one byte and closing; no failure, no leak, no actor left.
func TestSequentialDials(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testSequentialDials(t, tr) })
	}
}

func testSequentialDials(t *testing.T, tr transport) {
	n := tr.scaled(10000, 2000, 4)
	r, ln, d := newPair(t, tr)
	serveEcho(t, ln)
	baseSockets := relaytest.Sockets(t)
	baseGoroutines := runtime.NumGoroutine()

	var failures int
	var firstErrs []error
	for i := range n {
		err := func() error {
			c, err := d.Dial("tcp", serverName)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			b := [1]byte{byte(i)}
			if _, err := c.Write(b[:]); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return err
			}
			if b[0] != byte(i) {
				return fmt.Errorf("echo %d, want %d", b[0], byte(i))
			}
			return nil
		}()
		if err != nil {
			failures++
			if len(firstErrs) < 5 {
				firstErrs = append(firstErrs, fmt.Errorf("dial %d: %w", i, err))
			}
		}
	}
	if failures > 0 {
		t.Fatalf("%d of %d dials failed: %v", failures, n, errors.Join(firstErrs...))
	}
	relaytest.SocketsBack(t, baseSockets, 30*time.Second)
	waitEngineIdle(t, r, 30*time.Second)
	relaytest.Eventually(t, 30*time.Second, func() bool { return runtime.NumGoroutine() <= baseGoroutines },
		fmt.Sprintf("goroutines: %d, baseline %d", runtime.NumGoroutine(), baseGoroutines))
	if got := liveActors(r, actors.KindPending); got != 0 {
		t.Errorf("pending live %d, want 0", got)
	}
	if got := r.Node.Stats().Actors.Spliced; got != int64(n) {
		t.Errorf("relay spliced %d pairs, want %d", got, n)
	}
	if f := ln.(failedCounter).Failed(); f != 0 {
		t.Errorf("listener Failed() = %d, want 0", f)
	}
}

// TestConnCopy checks io.Copy on relayed conns (Conn.WriteTo and
// ReadFrom, which let it splice): the bytes behind the 101 come first and
// whole, then the socket's, in both directions, to and from plain TCP
// and between two relayed conns.
func TestConnCopy(t *testing.T) {
	payload := randomBytes(rand.Uint64(), 256<<10)

	t.Run("from-conn-with-head", func(t *testing.T) {
		// The fake relay writes the payload in the same write as the
		// 101, so the conn starts with a head.
		c := dialFakeRelay(t, payload)
		a, b := tcpPipe(t)
		done := make(chan []byte, 1)
		go func() {
			got, _ := io.ReadAll(b)
			done <- got
		}()
		n, err := io.Copy(a, c)
		a.Close()
		if err != nil || n != int64(len(payload)) {
			t.Fatalf("io.Copy(tcp, conn) = %d, %v; want %d, nil", n, err, len(payload))
		}
		if got := <-done; !bytes.Equal(got, payload) {
			t.Fatalf("copied bytes differ at %d", firstDiff(got, payload))
		}
	})

	t.Run("to-and-between-relayed", func(t *testing.T) {
		_, ln, d := newPair(t, tcpTransport)
		// The server copies the client's bytes back with io.Copy (its
		// ReadFrom and WriteTo between one conn: an echo).
		serve(t, ln, func(c net.Conn) {
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			_, _ = io.Copy(c, c)
		})
		c, err := d.Dial("tcp", serverName)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		src, feed := tcpPipe(t)
		go func() {
			feed.Write(payload)
			feed.Close()
		}()
		done := make(chan []byte, 1)
		go func() {
			got, _ := io.ReadAll(c)
			done <- got
		}()
		n, err := io.Copy(c, src) // ReadFrom: TCP to relayed
		if err != nil || n != int64(len(payload)) {
			t.Fatalf("io.Copy(conn, tcp) = %d, %v", n, err)
		}
		c.(closeWriter).CloseWrite()
		if got := <-done; !bytes.Equal(got, payload) {
			t.Fatalf("echoed bytes differ at %d (got %d bytes)", firstDiff(got, payload), len(got))
		}
	})
}

// dialFakeRelay dials serverName through a fake relay that writes payload
// in the same write as its 101, and returns the conn with an I/O deadline,
// closed in cleanup.
func dialFakeRelay(t testing.TB, payload []byte) net.Conn {
	t.Helper()
	fr := startFakeRelay(t, payload)
	c, err := endpoints.DialTCP("tcp", serverName, fr.addr, clientName)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

// tcpPipe returns the two ends of a loopback TCP connection, closed in
// cleanup.
func tcpPipe(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

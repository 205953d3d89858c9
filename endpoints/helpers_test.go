package endpoints_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// Names used by the tests.
const (
	serverName = "echo"
	clientName = "client-1"
)

// ioTimeout bounds every single network step of a test: a read, a write, a
// handshake. It is a bound against hangs, never a timing assertion.
const ioTimeout = 10 * time.Second

// scaled returns full when the full-size checks run (no race detector, not
// -short), and small otherwise.
func scaled(full, small int) int {
	if raceOn || testing.Short() {
		return small
	}
	return full
}

// contextDialer is what a transport's dialer offers the tests.
type contextDialer interface {
	Dial(network, address string) (net.Conn, error)
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// transport is one way for the endpoints to reach each other through a
// relay. Endpoint tests run their body once per transport, as yamux runs
// its tests over several stream implementations.
type transport struct {
	name string
	// tlsRelay: the relay serves TLS (https://), and the endpoints verify
	// it with WithRelayTLS. The relay still reads the relayed bytes.
	tlsRelay bool
	// mtls: TLS end to end between the endpoints (ListenMTLS,
	// NewRelayMTLSDialer); the relay splices ciphertext it cannot read.
	// Accepted and dialed conns are *tls.Conn over an *endpoints.Conn.
	mtls bool
}

// tcpTransport is plain HTTP to the relay and plain TCP end to end. The
// tests that speak the protocol by hand (raw helpers) use it alone.
var tcpTransport = transport{name: "tcp"}

var transports = []transport{
	tcpTransport,
	{name: "tls-relay", tlsRelay: true},
	{name: "mtls", mtls: true},
	{name: "mtls+tls-relay", tlsRelay: true, mtls: true},
}

// usesTLS reports whether the transport runs TLS anywhere: such a transport
// costs a handshake or two per dial, and its relay copies through a buffer
// or moves ciphertext, so the heavy tests scale it down.
func (tr transport) usesTLS() bool { return tr.tlsRelay || tr.mtls }

// scaled is the package's scaled, divided by div for the TLS transports
// (and at least 1).
func (tr transport) scaled(full, small, div int) int {
	n := scaled(full, small)
	if tr.usesTLS() {
		n = max(n/div, 1)
	}
	return n
}

// start starts a relay for cfg: plain, or TLS with a fresh CA for
// tlsRelay.
func (tr transport) start(t testing.TB, cfg relaynode.Config) *relaytest.Relay {
	t.Helper()
	if tr.tlsRelay {
		return relaytest.StartTLS(t, cfg)
	}
	return relaytest.Start(t, cfg)
}

// relayOpts prepends the options that reach r: WithRelayTLS trusting its
// CA for a TLS relay. The caller's options come after, so they win.
func (tr transport) relayOpts(r *relaytest.Relay, opts []endpoints.Option) []endpoints.Option {
	if !tr.tlsRelay {
		return opts
	}
	return append([]endpoints.Option{endpoints.WithRelayTLS(&tls.Config{RootCAs: r.RootCAs})}, opts...)
}

// dialAddr is the relay address a dialer is given: host:port for a plain
// relay, to exercise that form, and the https:// URL for a TLS one.
func (tr transport) dialAddr(r *relaytest.Relay) string {
	if tr.tlsRelay {
		return r.URL
	}
	return r.Addr
}

// listen registers name on r.
func (tr transport) listen(t testing.TB, r *relaytest.Relay, name string, opts ...endpoints.Option) (net.Listener, error) {
	t.Helper()
	opts = tr.relayOpts(r, opts)
	if tr.mtls {
		return endpoints.ListenMTLS("tcp", name, sharedPKI(t).serverConfig(), r.URL, opts...)
	}
	return endpoints.ListenRelay("tcp", name, r.URL, opts...)
}

// dialer returns a dialer through r introducing itself as client.
func (tr transport) dialer(t testing.TB, r *relaytest.Relay, client string, opts ...endpoints.Option) contextDialer {
	t.Helper()
	opts = tr.relayOpts(r, opts)
	if tr.mtls {
		return mtlsDialer{endpoints.NewRelayMTLSDialer(tr.dialAddr(r), client, opts...), sharedPKI(t).clientConfig()}
	}
	return endpoints.NewRelayDialer(tr.dialAddr(r), client, opts...)
}

// rawRelayConn opens a connection to r's HTTP server as the transport
// reaches it: TCP, or TLS trusting r's CA, offering http/1.1 as the
// endpoints do.
func (tr transport) rawRelayConn(t testing.TB, r *relaytest.Relay) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: ioTimeout}
	var (
		c   net.Conn
		err error
	)
	if tr.tlsRelay {
		c, err = tls.DialWithDialer(d, "tcp", r.Addr, &tls.Config{RootCAs: r.RootCAs, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = d.Dial("tcp", r.Addr)
	}
	if err != nil {
		t.Fatalf("connect to the relay: %v", err)
	}
	return c
}

// mtlsDialer gives an MTLS dialer the contextDialer shape, with the
// client's TLS config fixed.
type mtlsDialer struct {
	d   *endpoints.RelayMTLSDialer
	cfg *tls.Config
}

func (m mtlsDialer) Dial(network, address string) (net.Conn, error) {
	return m.d.Dial(network, address, m.cfg)
}

func (m mtlsDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return m.d.DialContext(ctx, network, address, m.cfg)
}

// relayed returns the *endpoints.Conn under c: c itself, or the NetConn of
// an MTLS conn. It fails the test for any other type.
func relayed(t testing.TB, c net.Conn) *endpoints.Conn {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	rc, ok := c.(*endpoints.Conn)
	if !ok {
		t.Fatalf("conn is %T, want *endpoints.Conn or *tls.Conn over one", c)
	}
	return rc
}

// testPKI is the certificates of the mtls transports: one CA, a server
// certificate for serverName and a client certificate for clientName.
type testPKI struct {
	ca     *relaytest.CA
	server tls.Certificate
	client tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

// sharedPKI returns the package's testPKI, made on first use.
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		ca := relaytest.NewCA(t, "endpoints test CA")
		pki = &testPKI{
			ca:     ca,
			server: ca.Issue(t, serverName, serverName),
			client: ca.Issue(t, clientName),
		}
	})
	if pki == nil {
		t.Fatal("the test PKI could not be made")
	}
	return pki
}

// serverConfig is a listener's: its certificate and the CA for clients,
// ClientAuth left zero so that ListenMTLS makes it mutual.
func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca.Pool}
}

// clientConfig is a dialer's: its certificate and the CA for the server,
// ServerName left empty so that the dialer takes the server's name.
func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.client}, RootCAs: p.ca.Pool}
}

// pairConfig tunes newPairWith; its zero value is newPair's setup.
type pairConfig struct {
	relay      relaynode.Config
	listenOpts []endpoints.Option
	dialOpts   []endpoints.Option
}

// newPair starts a relay, registers serverName on it and returns the relay,
// the listener and a dialer introducing itself as clientName. The listener
// is closed in the test's cleanup, before the relay.
func newPair(t testing.TB, tr transport) (*relaytest.Relay, net.Listener, contextDialer) {
	t.Helper()
	return newPairWith(t, tr, pairConfig{})
}

func newPairWith(t testing.TB, tr transport, pc pairConfig) (*relaytest.Relay, net.Listener, contextDialer) {
	t.Helper()
	r := tr.start(t, pc.relay)
	ln, err := tr.listen(t, r, serverName, pc.listenOpts...)
	if err != nil {
		t.Fatalf("listen %q: %v", serverName, err)
	}
	t.Cleanup(func() { ln.Close() })
	return r, ln, tr.dialer(t, r, clientName, pc.dialOpts...)
}

// failedCounter is the listener's count of failed callbacks.
type failedCounter interface{ Failed() int64 }

type closeWriter interface{ CloseWrite() error }

// serve starts a relaytest.Serve accept loop on ln that runs handle for
// each conn and closes the conn when handle returns.
func serve(t testing.TB, ln net.Listener, handle func(net.Conn)) *relaytest.Server {
	t.Helper()
	return relaytest.Serve(t, ln, handle)
}

// serveEcho serves ln with relaytest.Echo.
func serveEcho(t testing.TB, ln net.Listener) *relaytest.Server {
	t.Helper()
	return relaytest.ServeEcho(t, ln)
}

// acceptOne accepts one conn on ln, bounded by ioTimeout, and closes it in
// cleanup.
func acceptOne(t testing.TB, ln net.Listener) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(ioTimeout):
		// Closing the listener ends the Accept, so no goroutine leaks.
		ln.Close()
		if r := <-ch; r.c != nil {
			r.c.Close()
		}
		t.Fatalf("accept: nothing within %v", ioTimeout)
		return nil
	}
}

// dialResult is the outcome of a dial run in a goroutine.
type dialResult struct {
	c   net.Conn
	err error
}

// goDial dials serverName in a goroutine, so that the test can play the
// server by hand meanwhile. Cleanup cancels the dial if it still runs,
// waits for it, and closes a conn that nobody collected.
func goDial(t testing.TB, ctx context.Context, d contextDialer) <-chan dialResult {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan dialResult, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := d.DialContext(ctx, "tcp", serverName)
		ch <- dialResult{c, err}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		select {
		case r := <-ch:
			if r.c != nil {
				r.c.Close()
			}
		default:
		}
	})
	return ch
}

// waitDial waits for a goDial's result, bounded by timeout. A conn it
// returns is closed in cleanup.
func waitDial(t testing.TB, ch <-chan dialResult, timeout time.Duration) dialResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.c != nil {
			t.Cleanup(func() { r.c.Close() })
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("dial did not return within %v", timeout)
		return dialResult{}
	}
}

// liveActors returns the engine's live count of kind k.
func liveActors(r *relaytest.Relay, k actors.Kind) int64 {
	return r.Node.Stats().Actors.Kinds[k].Live
}

// waitEngineIdle waits until the relay has no pending dial and no pair.
func waitEngineIdle(t testing.TB, r *relaytest.Relay, timeout time.Duration) {
	t.Helper()
	relaytest.Eventually(t, timeout, func() bool {
		s := r.Node.Stats().Actors
		return s.Kinds[actors.KindPending].Live == 0 && s.Kinds[actors.KindPair].Live == 0
	}, fmt.Sprintf("engine not idle: %+v", r.Node.Stats().Actors.Kinds))
}

// randomBytes returns n bytes of a ChaCha8 stream seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(chachaSeed(seed)).Read(b)
	return b
}

func chachaSeed(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// readExactlyThenEOF reads len(want) bytes from r, checks them, and checks
// that r then ends.
func readExactlyThenEOF(t testing.TB, what string, r io.Reader, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("%s: read %d bytes: %v", what, len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from what was sent (first diff at %d)", what, len(want), firstDiff(got, want))
	}
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || err != io.EOF {
		t.Fatalf("%s: after %d bytes read %d more, err %v; want EOF", what, len(want), n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// stream is one direction of a transfer as seen by one end.
type stream struct {
	n   int64
	sum [sha256.Size]byte
}

// shuttle writes size bytes of ChaCha8 data from seed on c and half-closes
// it, while reading c to EOF. It returns what it sent and what it received.
// Both run at once, so neither end can stall the other.
func shuttle(c net.Conn, seed uint64, size int) (sent, recv stream, err error) {
	werr := make(chan error, 1)
	go func() {
		rng := rand.NewChaCha8(chachaSeed(seed))
		h := sha256.New()
		buf := make([]byte, 32<<10)
		for left := size; left > 0; {
			n := min(left, len(buf))
			_, _ = rng.Read(buf[:n])
			h.Write(buf[:n])
			m, err := c.Write(buf[:n])
			sent.n += int64(m)
			if err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			left -= n
		}
		h.Sum(sent.sum[:0])
		cw, ok := c.(closeWriter)
		if !ok {
			werr <- fmt.Errorf("%T has no CloseWrite", c)
			return
		}
		werr <- cw.CloseWrite()
	}()
	h := sha256.New()
	buf := make([]byte, 32<<10)
	recv.n, err = io.CopyBuffer(h, readerOnly{c}, buf)
	h.Sum(recv.sum[:0])
	if err != nil {
		err = fmt.Errorf("read after %d bytes: %w", recv.n, err)
		c.Close() // unblocks the writer
	}
	return sent, recv, errors.Join(err, <-werr)
}

type readerOnly struct{ io.Reader }

// Raw protocol helpers: for the tests that play one side by hand.

// rawServer is a registration made by hand: a relaytest.Stream and its
// registration id.
type rawServer struct {
	*relaytest.Stream
	regID string
}

// rawListen registers name on the relay at relayAddr with a hand-written
// request and reads the ready event. The stream is closed in cleanup.
func rawListen(t testing.TB, relayAddr, name string) *rawServer {
	t.Helper()
	st, a := relaytest.Listen(nil, relayAddr, name, ioTimeout)
	if st == nil {
		t.Fatalf("raw listen %q: %v", name, a)
	}
	t.Cleanup(func() { st.Close() })
	return &rawServer{Stream: st, regID: st.Registration}
}

// nextConnect reads the stream up to its next connect event, bounded by
// ioTimeout, passing over other events.
func (s *rawServer) nextConnect(t testing.TB) wire.ConnectEvent {
	t.Helper()
	ce, err := s.NextConnect(ioTimeout)
	if err != nil {
		t.Fatalf("raw server: %v", err)
	}
	return ce
}

// rawAccept sends the callback for token with registration id regID on a
// new connection, with extra in the same write as the request. It returns
// the status and, for a 101, the connection and the reader holding any
// bytes that came behind the 101; that connection is closed in cleanup.
// Any other answer's connection is closed at once. An I/O failure is
// reported with t.Errorf (so it may run in any goroutine) and returns 0.
func rawAccept(t testing.TB, relayAddr, token, regID string, extra []byte) (int, net.Conn, *bufio.Reader) {
	t.Helper()
	return rawUpgrade(t, relayAddr, "accept", relaytest.AcceptRequest(wire.PathAccept+token, regID)+string(extra), nil)
}

// rawDial sends a dial request for name, with extra in the same write. If
// before is not nil, it is awaited between the write and the read of the
// answer. Results are as for rawAccept.
func rawDial(t testing.TB, relayAddr, name, client string, extra []byte, before <-chan struct{}) (int, net.Conn, *bufio.Reader) {
	t.Helper()
	return rawUpgrade(t, relayAddr, "dial", relaytest.DialRequest(name, client)+string(extra), before)
}

func rawUpgrade(t testing.TB, relayAddr, op, req string, before <-chan struct{}) (int, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := relaytest.DialRaw(nil, relayAddr, ioTimeout)
	if err != nil {
		t.Errorf("raw %s: %v", op, err)
		return 0, nil, nil
	}
	if err := c.Send(req); err != nil {
		c.Close()
		t.Errorf("raw %s: write: %v", op, err)
		return 0, nil, nil
	}
	if before != nil {
		select {
		case <-before:
		case <-time.After(ioTimeout):
			c.Close()
			t.Errorf("raw %s: the awaited event did not come within %v", op, ioTimeout)
			return 0, nil, nil
		}
	}
	a := c.Answer(ioTimeout)
	switch {
	case a.Status == 0:
		c.Close()
		t.Errorf("raw %s: read response: %v", op, a.Err)
		return 0, nil, nil
	case a.Status != http.StatusSwitchingProtocols:
		c.Close()
		return a.Status, nil, nil
	}
	if up := a.Header.Get("Upgrade"); !strings.EqualFold(up, wire.UpgradeProtocol) {
		c.Close()
		t.Errorf("raw %s: 101 with Upgrade %q", op, up)
		return 0, nil, nil
	}
	_ = c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return a.Status, c.Conn, c.R
}

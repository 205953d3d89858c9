package endpoints

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// RelayListener creates listeners on one relay.
type RelayListener struct {
	relayURL string
	opts     options
}

// NewRelayListener returns a RelayListener for the relay at relayURL
// (host:port, http://host:port or https://host:port).
func NewRelayListener(relayURL string, opts ...Option) *RelayListener {
	return &RelayListener{relayURL: relayURL, opts: buildOptions(opts)}
}

// ListenRelay registers address as a name on the relay at relayURL and
// returns a listener for the connections dialed to it; it is
// NewRelayListener(relayURL, opts...).Listen(network, address).
//
// The contract, in full:
//
//   - ListenRelay returns once the relay has confirmed the registration
//     with its ready event, within the handshake timeout
//     (WithHandshakeTimeout, default 10s), or with the first attempt's
//     error: ErrUnsupportedNetwork, wire.ErrBadName, ErrBadRelayAddress,
//     ErrNotRelay, a dial or TLS error, a *RelayError (409 name taken, 401
//     or 403 credentials, 429 or 503 busy), ErrProtocol or
//     context.DeadlineExceeded. This first attempt is not retried.
//   - The returned net.Listener is a *Listener: State and Failed are its
//     methods, and Accept returns *Conn values (*tls.Conn from ListenMTLS).
//   - Reconnect: when the registration stream ends for any reason but
//     Close (a relay restart or drain, a read error, three heartbeat
//     intervals of silence), the listener registers again, with
//     exponential backoff and jitter (WithBackoff, default 100ms to 30s),
//     until it succeeds, Close is called, or a refusal is permanent.
//   - Takeover: each re-registration presents the old registration id
//     (Relay-Registration), so the relay hands the name back at once even
//     if it has not yet noticed the old stream is gone.
//   - Permanent refusals: a re-registration refused with 400, 401, 403,
//     404 or 409 (the name now belongs to someone else) ends the listener;
//     any other failure, ErrNotRelay included, is retried.
//   - Accept blocks across the gap and returns the next relayed
//     connection. A failed callback (or, on an MTLS listener, a failed TLS
//     handshake) is counted in Failed and never returned. Accept returns
//     an error only after Close (a *net.OpError wrapping net.ErrClosed) or
//     after a permanent refusal (a *net.OpError wrapping that
//     *RelayError), once the connections already made are taken.
//   - Connections already accepted are not disturbed by a reconnect or by
//     Close. Close ends the registration, closes connections not yet
//     accepted and returns once every goroutine of the listener is gone.
//   - State reports the stream's state (Connected, Since, Reconnects,
//     LastError, which wraps ErrStreamEnded after a loss); WithStateFunc is
//     called on each change.
func ListenRelay(network, address, relayURL string, opts ...Option) (net.Listener, error) {
	return NewRelayListener(relayURL, opts...).Listen(network, address)
}

// Listen registers address (a name) on the relay and returns once the
// relay has confirmed the registration with its ready event, or after the
// handshake timeout (WithHandshakeTimeout). It fails with a *RelayError
// when the relay refuses, for example 409 when the name is taken. The
// returned listener is a *Listener, whose Accept returns *Conn values.
//
// Once registered, the listener keeps its registration alive: when the
// stream ends for any reason but Close (a relay restart, a drain, a link
// found dead after three missed heartbeats), it registers again with
// exponential backoff and jitter (WithBackoff), presenting its old
// registration id so that it takes its name back at once. Accept keeps
// returning connections across the gap; connections already accepted are
// not disturbed. Only a permanent refusal (400, 401, 403, 404 or 409: the
// name now belongs to someone else) ends the listener.
func (rl *RelayListener) Listen(network, address string) (net.Listener, error) {
	return rl.ListenContext(context.Background(), network, address)
}

// ListenContext is Listen bounded by ctx as well as the handshake timeout.
// ctx bounds the first registration only, not the listener's life.
func (rl *RelayListener) ListenContext(ctx context.Context, network, address string) (net.Listener, error) {
	l, err := rl.listen(ctx, network, address, nil)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen %q: %w", address, err)
	}
	return l, nil
}

// listen registers name and starts the listener. With cfg set, each
// relayed connection runs a TLS server handshake before Accept gets it.
func (rl *RelayListener) listen(ctx context.Context, network, name string, cfg *tls.Config) (*Listener, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	if err := wire.CheckName(name); err != nil {
		return nil, err
	}
	r, err := parseRelay(rl.relayURL)
	if err != nil {
		return nil, err
	}
	ctxL, cancelL := context.WithCancel(context.Background())
	l := &Listener{
		tls:      cfg,
		relay:    r,
		network:  network,
		name:     name,
		opts:     rl.opts,
		ctx:      ctxL,
		cancel:   cancelL,
		accepted: make(chan net.Conn, rl.opts.acceptBacklog),
		sem:      make(chan struct{}, rl.opts.callbackWorkers),
		closed:   make(chan struct{}),
		dead:     make(chan struct{}),
	}
	st, err := l.register(ctx, "")
	if err != nil {
		cancelL()
		return nil, err
	}
	l.mu.Lock()
	l.cur = st
	l.state = ListenerState{Connected: true, Since: time.Now()}
	l.mu.Unlock()
	l.wg.Add(1)
	go l.run(st)
	l.startParking(st)
	return l, nil
}

// ListenerState is what a relay listener reports of its registration.
type ListenerState struct {
	// Connected is true while the registration stream is up.
	Connected bool
	// Since is when Connected last changed.
	Since time.Time
	// Reconnects counts successful re-registrations since Listen.
	Reconnects int
	// LastError is why the stream last ended or a re-registration last
	// failed; nil until then.
	LastError error
}

// maxHeartbeat bounds the heartbeat interval a listener accepts from a
// ready event, and so how long a silent stream can go unnoticed (three
// intervals).
const maxHeartbeat = 5 * time.Minute

// stream is one registration: its socket and event reader, and the
// context of its parked callbacks (WithWarmPool), cancelled when it ends.
type stream struct {
	conn     *idleConn
	sse      *wire.Reader
	regID    string
	parkCtx  context.Context
	stopPark context.CancelFunc
}

// Listener is a registration on a relay, kept alive across stream losses:
// the net.Listener that ListenRelay, Listen, ListenContext and ListenMTLS
// return. See ListenRelay for its contract. The run goroutine owns the
// stream; callback goroutines, at most opts.callbackWorkers, deliver to
// accepted, after the TLS handshake when tls is set.
type Listener struct {
	tls     *tls.Config // the MTLS stage, or nil
	relay   relay
	network string
	name    string
	opts    options

	ctx      context.Context // cancelled by Close: aborts callbacks, backoff, re-registration
	cancel   context.CancelFunc
	accepted chan net.Conn // *Conn, or *tls.Conn over one
	sem      chan struct{} // one slot per running callback
	wg       sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	dead      chan struct{} // closed by run when the listener gives up
	deadErr   error         // set before dead is closed

	failed atomic.Int64 // callbacks that failed

	mu    sync.Mutex // guards the following
	cur   *stream    // the live stream, closed by Close
	state ListenerState
}

// register sends the listen request and reads the ready event. replaces is
// the id of the registration this one takes over, or "".
func (l *Listener) register(ctx context.Context, replaces string) (*stream, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.handshake)
	defer cancel()
	raw, err := l.relay.connect(ctx, &l.opts, l.network)
	if err != nil {
		return nil, err
	}
	conn := &idleConn{Conn: raw}
	var (
		sse   *wire.Reader
		ready wire.ReadyEvent
	)
	req := wire.AppendRequest(make([]byte, 0, 256), l.relay.host, wire.PathListen+l.name,
		wire.HeaderRegistration, replaces, "Authorization", bearerValue(l.opts.token))
	err = exchange(ctx, conn, req, func() error {
		sse, ready, err = readReady(ctx, bufio.NewReaderSize(conn, wire.MaxUpgradeHead), l.name)
		return err
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	// From here every read pushes the deadline out by three heartbeats:
	// any byte, heartbeat comments included, proves the link alive.
	// A relay's heartbeat above maxHeartbeat (or one that would overflow)
	// is taken as maxHeartbeat: a silent link is found dead all the same.
	idle := 3 * time.Duration(min(ready.HeartbeatMillis, maxHeartbeat.Milliseconds())) * time.Millisecond
	conn.idle.Store(int64(idle))
	_ = conn.SetReadDeadline(time.Now().Add(idle))
	parkCtx, stopPark := context.WithCancel(l.ctx)
	return &stream{conn: conn, sse: sse, regID: ready.Registration, parkCtx: parkCtx, stopPark: stopPark}, nil
}

// readReady reads the answer to a listen request from br: a 200 whose body
// is the registration's event stream, returned with its first event, which
// must be ready. Any other status becomes a *RelayError (ErrNotRelay
// without Relay-Node). The head is bounded by wire.MaxUpgradeHead, each
// event by the SSE reader's limits (wire.DefaultMaxLine, DefaultMaxEvent).
func readReady(ctx context.Context, br *bufio.Reader, name string) (*wire.Reader, wire.ReadyEvent, error) {
	if err := readHead(ctx, br); err != nil {
		return nil, wire.ReadyEvent{}, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, wire.ReadyEvent{}, ctxErr(ctx, fmt.Errorf("%w: %v", ErrProtocol, err))
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get(wire.HeaderNode) == "" {
		return nil, wire.ReadyEvent{}, refusal(resp, "listen", name)
	}
	sse := wire.NewReader(resp.Body, 0, 0)
	ev, err := sse.Next()
	if err != nil {
		return nil, wire.ReadyEvent{}, fmt.Errorf("read ready event: %w", ctxErr(ctx, err))
	}
	if ev.Type != wire.EventReady {
		return nil, wire.ReadyEvent{}, fmt.Errorf("%w: first event %q, want %q", ErrProtocol, ev.Type, wire.EventReady)
	}
	ready, err := wire.ParseReady(ev.Data)
	return sse, ready, err
}

// run reads the stream's events and, when it ends, registers again until
// Close or a permanent refusal.
func (l *Listener) run(st *stream) {
	defer l.wg.Done()
	backoff := l.opts.backoffMin
	for {
		err := l.readEvents(st)
		st.stopPark()
		st.conn.Close()
		if l.ctx.Err() != nil {
			return
		}
		l.setState(false, err, false)
		l.opts.logger.Debug("stream ended", slog.String("name", l.name), slog.Any("err", err))
		for {
			d := jitter(backoff)
			backoff = min(2*backoff, l.opts.backoffMax)
			select {
			case <-time.After(d):
			case <-l.ctx.Done():
				return
			}
			next, err := l.register(l.ctx, st.regID)
			if err == nil {
				st = next
				break
			}
			if l.ctx.Err() != nil {
				return
			}
			l.setState(false, err, false)
			if permanent(err) {
				l.die(err)
				return
			}
			l.opts.logger.Debug("re-register failed", slog.String("name", l.name), slog.Any("err", err))
		}
		backoff = l.opts.backoffMin
		l.mu.Lock()
		if l.ctx.Err() != nil {
			l.mu.Unlock()
			st.conn.Close()
			return
		}
		l.cur = st
		l.mu.Unlock()
		l.startParking(st)
		l.setState(true, nil, true)
	}
}

// permanent reports whether a registration error will not go away by
// itself: the name is someone else's, or the request itself is refused.
func permanent(err error) bool {
	var re *RelayError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
		http.StatusNotFound, http.StatusConflict:
		return true
	}
	return false
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func (l *Listener) setState(connected bool, err error, reconnected bool) {
	l.mu.Lock()
	s := &l.state
	if s.Connected != connected {
		s.Since = time.Now()
	}
	s.Connected = connected
	if err != nil {
		s.LastError = err
	}
	if reconnected {
		s.Reconnects++
	}
	snap := *s
	l.mu.Unlock()
	if l.opts.onState != nil {
		l.opts.onState(snap)
	}
}

// State returns the registration's current state.
func (l *Listener) State() ListenerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

func (l *Listener) die(err error) {
	l.deadErr = err
	close(l.dead)
}

// Accept waits for and returns the next relayed connection. A failed
// callback or a lost stream never ends Accept; only Close (net.ErrClosed)
// or a permanent refusal to re-register does.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closed:
		return nil, l.closedErr()
	case <-l.dead:
		// Deliver what the callbacks already made before reporting death.
		select {
		case c := <-l.accepted:
			return c, nil
		default:
		}
		return nil, &net.OpError{Op: "accept", Net: "relay", Addr: l.Addr(), Err: l.deadErr}
	}
}

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "relay", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close ends the registration, aborts callbacks and re-registration in
// flight, closes connections not yet accepted, and returns after every
// goroutine of the listener has exited. It is safe to call twice.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.mu.Lock()
		l.cancel()
		if l.cur != nil {
			l.cur.conn.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		for {
			select {
			case c := <-l.accepted:
				closeRaw(c)
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the name's address on the relay.
func (l *Listener) Addr() net.Addr { return Addr{Name: l.name, Relay: l.relay.host} }

// Failed returns the number of callbacks that failed since Listen, and,
// on an MTLS listener, of TLS handshakes that failed. Bad connect events
// count as failed callbacks.
func (l *Listener) Failed() int64 { return l.failed.Load() }

// readEvents reads one stream's events until it ends.
func (l *Listener) readEvents(st *stream) error {
	drained := false
	for {
		ev, err := st.sse.Next()
		if err != nil {
			if drained {
				return fmt.Errorf("%w: relay drained: %w", ErrStreamEnded, err)
			}
			return fmt.Errorf("%w: %w", ErrStreamEnded, err)
		}
		switch ev.Type {
		case wire.EventConnect:
			ce, err := wire.ParseConnect(ev.Data)
			if err != nil {
				l.failed.Add(1)
				l.opts.logger.Debug("bad connect event", slog.String("name", l.name), slog.Any("err", err))
				continue
			}
			select {
			case l.sem <- struct{}{}:
			case <-l.closed:
				return net.ErrClosed
			}
			l.wg.Add(1)
			go l.callback(ce, st.regID)
		case wire.EventDrain:
			// The relay is going away. It ends the stream itself once the
			// dials already sent here have been called back; keep reading
			// until then, and re-register afterwards.
			drained = true
		}
		// Other events are for newer listeners: passed over.
	}
}

// callback answers one connect event: a new connection to the relay, the
// token with the registration id of the stream that carried it, the 101,
// the TLS handshake on an MTLS listener (holding its worker slot), and the
// conn into the accept queue. Its failure is counted and logged,
// never returned.
func (l *Listener) callback(ce wire.ConnectEvent, regID string) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshake)
	c, err := l.serverConn(ctx, "accept", ce.Callback, regID)
	cancel()
	if err != nil {
		if l.ctx.Err() == nil {
			l.failed.Add(1)
			l.opts.logger.Debug("callback failed", slog.String("name", l.name), slog.Any("err", err))
		}
		return
	}
	l.deliver(c)
}

// deliver hands c to Accept, after the TLS server handshake on an MTLS
// listener (bounded by the handshake timeout; a failure is counted and
// dropped). It reports false when the listener closed first.
func (l *Listener) deliver(c *Conn) bool {
	var out net.Conn = c
	if l.tls != nil {
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshake)
		tc := tls.Server(c, l.tls)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			if l.ctx.Err() != nil {
				return false
			}
			l.failed.Add(1)
			l.opts.logger.Debug("mtls handshake failed", slog.String("name", l.name),
				slog.String("client", c.RemoteAddr().String()), slog.Any("err", err))
			return true
		}
		out = tc
	}
	select {
	case l.accepted <- out:
		return true
	case <-l.closed:
		c.Close()
		return false
	}
}

// closeRaw closes an accepted conn that nobody took: its socket, without
// a TLS close_notify that could block on a peer that reads nothing.
func closeRaw(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.Close()
}

// serverConn makes one server-side connection through the relay: a new
// connection, a callback request (accept or park) on path with the
// registration id, and its 101, which carries the client's name and
// address. ctx bounds it all.
func (l *Listener) serverConn(ctx context.Context, op, path, regID string) (*Conn, error) {
	conn, err := l.relay.connect(ctx, &l.opts, l.network)
	if err != nil {
		return nil, err
	}
	u, err := upgradeExchange(ctx, conn, l.relay, op, l.name, path, wire.HeaderRegistration, regID)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(u.clientAddr); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	return newConn(conn, u.head, remote, l.name, u.clientName), nil
}

// idleConn is the stream's socket. Once idle is set, every read pushes the
// read deadline out by idle, so that any byte, heartbeat comments included,
// proves the link alive, and three missed heartbeats end the stream.
type idleConn struct {
	net.Conn
	idle atomic.Int64 // time.Duration; 0 leaves deadlines alone
}

func (c *idleConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
}

// startParking keeps opts.warmPool callbacks parked at the relay for st's
// registration until st ends (WithWarmPool).
func (l *Listener) startParking(st *stream) {
	for range l.opts.warmPool {
		l.wg.Add(1)
		go l.parker(st)
	}
}

// parker keeps one callback parked for st's registration: it parks, hands
// the connection a dial brings to Accept, and parks again, until st ends.
// A park the relay times out (204) or whose dial ended meanwhile (410) is
// renewed at once; a refusal for lack of room (429: the relay's per-
// registration cap is below the pool size; 503) or a failed connection is
// retried with the listener's backoff; an unknown registration (404) means
// st has ended, and the next stream starts new parkers.
func (l *Listener) parker(st *stream) {
	defer l.wg.Done()
	backoff := l.opts.backoffMin
	for st.parkCtx.Err() == nil {
		c, err := l.serverConn(st.parkCtx, "park", wire.PathPark+l.name, st.regID)
		if err == nil {
			backoff = l.opts.backoffMin
			if !l.deliver(c) {
				return
			}
			continue
		}
		if st.parkCtx.Err() != nil {
			return
		}
		var re *RelayError
		if errors.As(err, &re) {
			switch re.Status {
			case http.StatusNoContent, http.StatusGone:
				continue
			case http.StatusNotFound:
				return
			}
		}
		l.opts.logger.Debug("park failed", slog.String("name", l.name), slog.Any("err", err))
		select {
		case <-time.After(jitter(backoff)):
		case <-st.parkCtx.Done():
			return
		}
		backoff = min(2*backoff, l.opts.backoffMax)
	}
}

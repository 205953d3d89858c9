package endpoints

import (
	"context"
	"fmt"
	"log/slog"
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
// returns a listener for the connections dialed to it.
func ListenRelay(network, address, relayURL string, opts ...Option) (net.Listener, error) {
	return NewRelayListener(relayURL, opts...).Listen(network, address)
}

// Listen registers address (a name) on the relay and returns once the
// relay has confirmed the registration with its ready event, or after the
// handshake timeout (WithHandshakeTimeout). It fails with a *RelayError
// when the relay refuses, for example 409 when the name is taken. The
// returned listener's Accept returns *Conn values.
func (rl *RelayListener) Listen(network, address string) (net.Listener, error) {
	return rl.ListenContext(context.Background(), network, address)
}

// ListenContext is Listen bounded by ctx as well as the handshake timeout.
// ctx bounds the registration only, not the listener's life.
func (rl *RelayListener) ListenContext(ctx context.Context, network, address string) (net.Listener, error) {
	l, err := rl.listen(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen %q: %w", address, err)
	}
	return l, nil
}

func (rl *RelayListener) listen(ctx context.Context, network, name string) (*listener, error) {
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
	ctx, cancel := context.WithTimeout(ctx, rl.opts.handshake)
	defer cancel()
	raw, err := r.connect(ctx, &rl.opts, network)
	if err != nil {
		return nil, err
	}
	conn := &idleConn{Conn: raw}
	resp, _, err := exchange(ctx, conn, r, "listen", name, wire.PathListen+name, nil, http.StatusOK)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sse := wire.NewReader(resp.Body, 0, 0)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	ev, err := sse.Next()
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read ready event: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	if ev.Type != wire.EventReady {
		conn.Close()
		return nil, fmt.Errorf("%w: first event %q, want %q", ErrProtocol, ev.Type, wire.EventReady)
	}
	ready, err := wire.ParseReady(ev.Data)
	if err != nil {
		conn.Close()
		return nil, err
	}
	ctxL, cancelL := context.WithCancel(context.Background())
	l := &listener{
		relay:    r,
		network:  network,
		name:     name,
		opts:     rl.opts,
		conn:     conn,
		sse:      sse,
		regID:    ready.Registration,
		idle:     3 * ready.Heartbeat(),
		ctx:      ctxL,
		cancel:   cancelL,
		accepted: make(chan *Conn, rl.opts.acceptBacklog),
		sem:      make(chan struct{}, rl.opts.callbackWorkers),
		closed:   make(chan struct{}),
		dead:     make(chan struct{}),
	}
	conn.idle.Store(int64(l.idle))
	_ = conn.SetReadDeadline(time.Now().Add(l.idle))
	l.wg.Add(1)
	go l.readLoop()
	return l, nil
}

// listener is a registration on a relay. The read loop owns the stream;
// callback goroutines, at most opts.callbackWorkers, deliver to accepted.
type listener struct {
	relay   relay
	network string
	name    string
	opts    options
	conn    net.Conn // the stream's socket
	sse     *wire.Reader
	regID   string
	idle    time.Duration // three heartbeats

	ctx      context.Context // cancelled by Close: aborts callbacks
	cancel   context.CancelFunc
	accepted chan *Conn
	sem      chan struct{} // one slot per running callback
	wg       sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	dead      chan struct{} // closed by the read loop when the stream ends
	deadErr   error         // set before dead is closed

	failed atomic.Int64 // callbacks that failed
}

// Accept waits for and returns the next relayed connection. A failed
// callback never ends Accept; only Close (net.ErrClosed) or the end of the
// registration stream does.
func (l *listener) Accept() (net.Conn, error) {
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

func (l *listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "relay", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close ends the registration, aborts callbacks in flight, closes
// connections not yet accepted, and returns after every goroutine of the
// listener has exited. It is safe to call twice.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.cancel()
		l.conn.Close()
		l.wg.Wait()
		for {
			select {
			case c := <-l.accepted:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the name's address on the relay.
func (l *listener) Addr() net.Addr { return Addr{Name: l.name, Relay: l.relay.host} }

// Failed returns the number of callbacks that failed since Listen.
func (l *listener) Failed() int64 { return l.failed.Load() }

func (l *listener) readLoop() {
	defer l.wg.Done()
	err := l.readEvents()
	select {
	case <-l.closed:
	default:
		l.deadErr = err
		close(l.dead)
		l.conn.Close()
	}
}

func (l *listener) readEvents() error {
	for {
		ev, err := l.sse.Next()
		if err != nil {
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
			go l.callback(ce)
		case wire.EventDrain:
			return fmt.Errorf("%w: relay draining", ErrStreamEnded)
		}
		// Other events are for newer listeners: passed over.
	}
}

// callback answers one connect event: a new connection to the relay, the
// token, the 101, and the conn into the accept queue. Its failure is
// counted and logged, never returned.
func (l *listener) callback(ce wire.ConnectEvent) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	c, err := l.dialCallback(ce)
	if err != nil {
		if l.ctx.Err() == nil {
			l.failed.Add(1)
			l.opts.logger.Debug("callback failed", slog.String("name", l.name), slog.Any("err", err))
		}
		return
	}
	select {
	case l.accepted <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *listener) dialCallback(ce wire.ConnectEvent) (*Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshake)
	defer cancel()
	conn, err := l.relay.connect(ctx, &l.opts, l.network)
	if err != nil {
		return nil, err
	}
	resp, br, err := exchange(ctx, conn, l.relay, "accept", "", ce.Callback,
		upgradeHeaders(wire.HeaderRegistration, l.regID), http.StatusSwitchingProtocols)
	if err != nil {
		conn.Close()
		return nil, err
	}
	head, err := checkUpgrade(resp, br)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(resp.Header.Get(wire.HeaderClientAddr)); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	return newConn(conn, head, remote, l.name, resp.Header.Get(wire.HeaderClientName)), nil
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

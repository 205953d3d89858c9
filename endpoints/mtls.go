package endpoints

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// MTLS runs TLS end to end through the relay: the relay splices the bytes
// of a handshake it is not part of, so it sees ciphertext only. The dialer
// is the TLS client, the listener the TLS server, and both present
// certificates.

// RelayMTLSDialer dials servers by name through a relay and runs a TLS
// handshake with them end to end.
type RelayMTLSDialer struct {
	d *RelayDialer
}

// NewRelayMTLSDialer returns an MTLS dialer through the relay at relayAddr.
func NewRelayMTLSDialer(relayAddr, clientName string, opts ...Option) *RelayMTLSDialer {
	return &RelayMTLSDialer{d: NewRelayDialer(relayAddr, clientName, opts...)}
}

// DialMTLS dials the server registered as address through the relay and
// completes a TLS handshake with it using config.
func DialMTLS(network, address string, config *tls.Config, relayAddr, clientName string, opts ...Option) (net.Conn, error) {
	return NewRelayMTLSDialer(relayAddr, clientName, opts...).Dial(network, address, config)
}

// Dial is DialContext with a background context.
func (d *RelayMTLSDialer) Dial(network, address string, config *tls.Config) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address, config)
}

// DialContext dials address through the relay and completes a TLS
// handshake with the server before it returns, bounded by ctx and the dial
// timeout. config is cloned; an empty ServerName takes the server's name,
// so the server's certificate must cover that name. The returned conn is a
// *tls.Conn whose NetConn is the relayed *Conn; CloseWrite sends a TLS
// close_notify, which the server reads as EOF.
func (d *RelayMTLSDialer) DialContext(ctx context.Context, network, address string, config *tls.Config) (net.Conn, error) {
	name := dialName(address)
	c, err := d.dialContext(ctx, network, name, config)
	if err != nil {
		return nil, fmt.Errorf("endpoints: dial mtls %q: %w", name, err)
	}
	return c, nil
}

func (d *RelayMTLSDialer) dialContext(ctx context.Context, network, name string, config *tls.Config) (*tls.Conn, error) {
	if config == nil {
		return nil, ErrNoTLSConfig
	}
	ctx, cancel := context.WithTimeout(ctx, d.d.opts.dialTimeout)
	defer cancel()
	c, err := d.d.dial(ctx, network, name)
	if err != nil {
		return nil, err
	}
	cfg := config.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = name
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", ctxErr(ctx, err))
	}
	return tc, nil
}

// MTLSRelayListener creates MTLS listeners on one relay.
type MTLSRelayListener struct {
	rl *RelayListener
}

// NewMTLSRelayListener returns an MTLSRelayListener for the relay at
// relayURL.
func NewMTLSRelayListener(relayURL string, opts ...Option) *MTLSRelayListener {
	return &MTLSRelayListener{rl: NewRelayListener(relayURL, opts...)}
}

// ListenMTLS registers address on the relay and returns a listener whose
// Accept yields connections that completed a TLS handshake with config.
func ListenMTLS(network, address string, config *tls.Config, relayURL string, opts ...Option) (net.Listener, error) {
	return NewMTLSRelayListener(relayURL, opts...).Listen(network, address, config)
}

// Listen registers address on the relay. The listener is mutual by
// default: a config whose ClientAuth is tls.NoClientCert gets
// tls.RequireAndVerifyClientCert, and then must have ClientCAs. For other
// modes set ClientAuth explicitly. A config with no certificate source is
// ErrNoCertificate, a mutual one without ClientCAs ErrNoClientCAs. Handshakes run concurrently (WithCallbackWorkers of them),
// each bounded by the handshake timeout, so one slow or bad client never
// blocks Accept; a failed handshake is counted and dropped. Accept returns
// *tls.Conn values, handshake complete: ConnectionState().VerifiedChains
// holds the client's verified chain, and NetConn() is the relayed *Conn
// (ClientName, the client's RemoteAddr).
func (l *MTLSRelayListener) Listen(network, address string, config *tls.Config) (net.Listener, error) {
	cfg, err := serverTLS(config)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen mtls %q: %w", address, err)
	}
	inner, err := l.rl.listen(context.Background(), network, address)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen mtls %q: %w", address, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ml := &mtlsListener{
		inner:  inner,
		cfg:    cfg,
		ctx:    ctx,
		cancel: cancel,
		ready:  make(chan *tls.Conn, inner.opts.acceptBacklog),
		sem:    make(chan struct{}, inner.opts.callbackWorkers),
		closed: make(chan struct{}),
		dead:   make(chan struct{}),
	}
	ml.wg.Add(1)
	go ml.acceptLoop()
	return ml, nil
}

// serverTLS checks and completes a listener's TLS config.
func serverTLS(config *tls.Config) (*tls.Config, error) {
	if config == nil {
		return nil, ErrNoTLSConfig
	}
	if len(config.Certificates) == 0 && config.GetCertificate == nil && config.GetConfigForClient == nil {
		return nil, ErrNoCertificate
	}
	cfg := config.Clone()
	if cfg.ClientAuth == tls.NoClientCert {
		if cfg.ClientCAs == nil && cfg.GetConfigForClient == nil {
			return nil, ErrNoClientCAs
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// mtlsListener wraps a relay listener with concurrent server handshakes.
type mtlsListener struct {
	inner  *listener
	cfg    *tls.Config
	ctx    context.Context // cancelled by Close: aborts handshakes
	cancel context.CancelFunc
	ready  chan *tls.Conn
	sem    chan struct{} // one slot per running handshake
	wg     sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{}
	dead      chan struct{} // closed by acceptLoop when inner dies
	deadErr   error

	handshakeFailed atomic.Int64
}

func (l *mtlsListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			l.deadErr = err
			close(l.dead)
			return
		}
		select {
		case l.sem <- struct{}{}:
		case <-l.closed:
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *mtlsListener) handshake(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	ctx, cancel := context.WithTimeout(l.ctx, l.inner.opts.handshake)
	defer cancel()
	tc := tls.Server(c, l.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		if l.ctx.Err() == nil {
			l.handshakeFailed.Add(1)
			l.inner.opts.logger.Debug("mtls handshake failed", slog.String("name", l.inner.name),
				slog.String("client", c.RemoteAddr().String()), slog.Any("err", err))
		}
		return
	}
	select {
	case l.ready <- tc:
	case <-l.closed:
		c.Close()
	}
}

// Accept returns the next connection whose TLS handshake completed. Failed
// callbacks and handshakes never end it; Close (net.ErrClosed) or the end
// of the registration stream does.
func (l *mtlsListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, l.inner.closedErr()
	default:
	}
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closed:
		return nil, l.inner.closedErr()
	case <-l.dead:
		select {
		case c := <-l.ready:
			return c, nil
		default:
		}
		return nil, l.deadErr
	}
}

// Close ends the registration, aborts handshakes in flight, closes conns
// not yet accepted, and returns after every goroutine has exited. It is
// safe to call twice.
func (l *mtlsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.cancel()
		l.inner.Close()
		l.wg.Wait()
		for {
			select {
			case c := <-l.ready:
				c.NetConn().Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the name's address on the relay.
func (l *mtlsListener) Addr() net.Addr { return l.inner.Addr() }

// Failed returns the callbacks and handshakes that failed since Listen.
func (l *mtlsListener) Failed() int64 { return l.inner.Failed() + l.handshakeFailed.Load() }

// State returns the registration's current state.
func (l *mtlsListener) State() ListenerState { return l.inner.State() }

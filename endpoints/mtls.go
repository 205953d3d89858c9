package endpoints

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// MTLS runs TLS end to end through the relay: the relay splices the bytes
// of a handshake it is not part of, so it sees ciphertext only. The dialer
// is the TLS client, the listener the TLS server, and both present
// certificates.

// RelayMTLSDialer dials servers by name through a relay (or the first of
// several that can take the dial) and runs a TLS handshake with them end
// to end.
type RelayMTLSDialer struct {
	d *RelayDialer
}

// NewRelayMTLSDialer returns an MTLS dialer through the relay at relayAddr,
// which may be a comma-separated list of addresses, tried as
// NewRelayDialer's are.
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

// MTLSRelayListener creates MTLS listeners on a relay, or on several.
type MTLSRelayListener struct {
	rl *RelayListener
}

// NewMTLSRelayListener returns an MTLSRelayListener for the relay at
// relayURL, which may be a comma-separated list of addresses, used as
// ListenRelay uses them.
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
// (ClientName, the client's RemoteAddr). The listener is a *Listener, as
// ListenRelay's, with the handshake as a stage between callback and Accept.
func (l *MTLSRelayListener) Listen(network, address string, config *tls.Config) (net.Listener, error) {
	cfg, err := serverTLS(config)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen mtls %q: %w", address, err)
	}
	ln, err := l.rl.listen(context.Background(), network, address, cfg)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen mtls %q: %w", address, err)
	}
	return ln, nil
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

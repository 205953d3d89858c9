package endpoints

import (
	"context"
	"fmt"
	"net"

	"github.com/clusterlink-relay/relay/wire"
)

// RelayDialer dials servers by name through one relay. It is safe for
// concurrent use; its DialContext fits http.Transport.DialContext.
type RelayDialer struct {
	clientName string
	opts       options

	// Checked once by NewRelayDialer; a failure is returned by every Dial.
	relay relay
	err   error
}

// NewRelayDialer returns a dialer through the relay at relayAddr
// (host:port, http://host:port or https://host:port), introducing itself
// as clientName ("" for none). An invalid address is reported by Dial.
func NewRelayDialer(relayAddr, clientName string, opts ...Option) *RelayDialer {
	d := &RelayDialer{clientName: clientName, opts: buildOptions(opts)}
	if clientName != "" {
		if err := wire.CheckName(clientName); err != nil {
			d.err = fmt.Errorf("client name: %w", err)
			return d
		}
	}
	d.relay, d.err = parseRelay(relayAddr)
	return d
}

// DialTCP dials the server registered as address through the relay at
// relayAddr. network is "tcp", "tcp4" or "tcp6" and selects the family of
// the connection to the relay.
func DialTCP(network, address, relayAddr, clientName string, opts ...Option) (net.Conn, error) {
	return NewRelayDialer(relayAddr, clientName, opts...).Dial(network, address)
}

// Dial is DialContext with a background context.
func (d *RelayDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to the server registered as address. address is the
// name, optionally with a port, which is ignored, so that URLs such as
// http://name/ work through http.Transport. It returns once the relay has
// spliced the connection to the server's callback, or with a *RelayError
// (404 unknown name, 503 busy, 504 the server did not call back), or with
// ctx's error. The dial is also bounded by WithDialTimeout (default 30s).
// The returned conn is a *Conn.
func (d *RelayDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	name := dialName(address)
	ctx, cancel := context.WithTimeout(ctx, d.opts.dialTimeout)
	defer cancel()
	c, err := d.dial(ctx, network, name)
	if err != nil {
		return nil, fmt.Errorf("endpoints: dial %q: %w", name, err)
	}
	return c, nil
}

// dial makes one relayed connection to name, bounded by ctx: a new
// connection to the relay, the dial request, and its 101.
func (d *RelayDialer) dial(ctx context.Context, network, name string) (*Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	if err := wire.CheckName(name); err != nil {
		return nil, err
	}
	if d.err != nil {
		return nil, d.err
	}
	conn, err := d.relay.connect(ctx, &d.opts, network)
	if err != nil {
		return nil, err
	}
	u, err := upgradeExchange(ctx, conn, d.relay, "dial", name, wire.PathDial+name,
		wire.HeaderClientName, d.clientName, "Authorization", bearerValue(d.opts.dialToken))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return newConn(conn, u.head, nil, name, d.clientName), nil
}

// dialName returns the server name in a dial address: the address itself,
// or its host when it has a port (name:port, as http.Transport dials).
func dialName(address string) string {
	if host, _, err := net.SplitHostPort(address); err == nil {
		return host
	}
	return address
}

// bearerValue returns an Authorization header value for token, or "" (no
// header) for no token.
func bearerValue(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

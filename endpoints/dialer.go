package endpoints

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/clusterlink-relay/relay/wire"
)

// RelayDialer dials servers by name through a relay, or through the first
// of several relays that answers. It is safe for concurrent use; its
// DialContext fits http.Transport.DialContext.
type RelayDialer struct {
	clientName string
	opts       options

	// Checked once by NewRelayDialer; a failure is returned by every Dial.
	relays []relay
	err    error

	next atomic.Uint32 // the relay the next dial starts at, modulo len(relays)
}

// NewRelayDialer returns a dialer through the relay at relayAddr
// (host:port, http://host:port or https://host:port), introducing itself
// as clientName ("" for none). relayAddr may be a comma-separated list of
// such addresses, the nodes of one cluster or independent relays: each
// dial starts at the next one in turn, so that dials spread over them, and
// moves on to the next address when one cannot take the dial (see
// DialContext). An invalid address, an empty entry or one listed twice is
// ErrBadRelayAddress, reported by Dial.
func NewRelayDialer(relayAddr, clientName string, opts ...Option) *RelayDialer {
	d := &RelayDialer{clientName: clientName, opts: buildOptions(opts)}
	if clientName != "" {
		if err := wire.CheckName(clientName); err != nil {
			d.err = fmt.Errorf("client name: %w", err)
			return d
		}
	}
	d.relays, d.err = parseRelays(relayAddr)
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
//
// With several relay addresses, a dial tries them in turn, starting at a
// different one for each dial of this dialer, and moves on to the next
// when this one cannot take the dial: a failed connection or TLS
// handshake, an answer that is not a relay's (ErrNotRelay: a load
// balancer's error page, another server) or that breaks the protocol,
// and the refusals of a node that another node may not share: 429 (its
// per-client rate limit), 500, 502 (the registration it knew ended), 503
// (draining, busy, its listener queue full, its cluster directory
// unreachable) and other 5xx but 504. It stops at an answer that another
// node would give as well: 400, 401 and 403 (the request or its
// credentials), 404 (no such name: in a cluster every node shares one
// directory), 409, 410, and 504 (the server was reached and did not call
// back in time; the dial's time is spent). When every address fails, the
// error joins each address's error (errors.Join, each naming its relay),
// so errors.Is and errors.As see all of them; when ctx or the dial timeout
// ends first, the addresses not yet tried are not, and the error is
// ctx's.
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
	n := len(d.relays)
	if n == 1 {
		return d.dialOne(ctx, network, name, d.relays[0])
	}
	start := int((d.next.Add(1) - 1) % uint32(n))
	var errs []error
	for k := range n {
		i := (start + k) % n
		c, err := d.dialOne(ctx, network, name, d.relays[i])
		if err == nil {
			return c, nil
		}
		errs = append(errs, relayErr(d.relays, i, err))
		if ctx.Err() != nil || !nextRelay(err) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialOne makes one relayed connection to name through r, bounded by ctx.
func (d *RelayDialer) dialOne(ctx context.Context, network, name string, r relay) (*Conn, error) {
	conn, err := r.connect(ctx, &d.opts, network)
	if err != nil {
		return nil, err
	}
	header := []string{wire.HeaderClientName, d.clientName, "Authorization", bearerValue(d.opts.dialToken)}
	if d.opts.earlyData {
		return earlyDial(ctx, conn, r, name, d.clientName, header)
	}
	u, err := upgradeExchange(ctx, conn, r, "dial", name, wire.PathDial+name, header...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return newConn(conn, u.head, nil, name, d.clientName), nil
}

// nextRelay reports whether a dial that failed with err at one relay may
// succeed at another: see DialContext.
func nextRelay(err error) bool {
	var re *RelayError
	if !errors.As(err, &re) {
		return true // a connection, TLS or protocol failure, or not a relay
	}
	switch {
	case re.Status == http.StatusTooManyRequests:
		return true
	case re.Status == http.StatusGatewayTimeout:
		return false
	case re.Status >= 500 && re.Status <= 599:
		return true
	}
	return false
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

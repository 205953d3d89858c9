package endpoints

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"
)

// Option configures a dialer or listener.
type Option func(*options)

type options struct {
	dialer          *net.Dialer
	logger          *slog.Logger
	callbackWorkers int
	acceptBacklog   int
	handshake       time.Duration
	dialTimeout     time.Duration
	relayTLS        *tls.Config
	backoffMin      time.Duration
	backoffMax      time.Duration
	onState         func(ListenerState)
	token           string // bearer token for registrations
	dialToken       string // bearer token for dials
	warmPool        int    // callbacks kept parked at the relay
	redundancy      int    // registrations held at once (WithRedundancy; default 1)
	earlyData       bool   // a dial returns once its request is written (WithEarlyData)
}

func buildOptions(opts []Option) options {
	o := options{
		dialer:          &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second},
		callbackWorkers: 16,
		acceptBacklog:   64,
		handshake:       10 * time.Second,
		dialTimeout:     30 * time.Second,
		backoffMin:      100 * time.Millisecond,
		backoffMax:      30 * time.Second,
		redundancy:      1,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// WithDialer sets the net.Dialer used for connections to the relay
// (default: 10s timeout, 15s TCP keepalive).
func WithDialer(d *net.Dialer) Option {
	return func(o *options) {
		if d != nil {
			o.dialer = d
		}
	}
}

// WithLogger sets the logger of a listener. The library is silent by
// default; failed callbacks and bad events are logged at debug. Dialers
// log nothing: they return every failure as an error.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithCallbackWorkers bounds how many callbacks a listener dials at once
// (default 16). When all are busy, the listener stops reading its stream
// and the relay refuses new dials with 503 once its queue fills.
func WithCallbackWorkers(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.callbackWorkers = n
		}
	}
}

// WithAcceptBacklog sets how many ready connections a listener holds for
// Accept (default 64). When it is full, callbacks wait.
func WithAcceptBacklog(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.acceptBacklog = n
		}
	}
}

// WithBackoff sets the bounds of a listener's re-registration backoff
// (default 100ms to 30s). Each failed attempt doubles the wait, capped at
// max; each wait is drawn from [d/2, d) so that many listeners of one
// restarted relay do not return in step; a success resets it to min.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min > 0 && max >= min {
			o.backoffMin, o.backoffMax = min, max
		}
	}
}

// WithStateFunc sets a function a listener calls with its new state each
// time a registration stream goes down or drains, fails to come back, or
// comes back. It is called from the listener's goroutines, one call at a
// time in the order of the changes, and must not block.
func WithStateFunc(f func(ListenerState)) Option {
	return func(o *options) { o.onState = f }
}

// WithToken sets the bearer token a listener presents when it registers
// its name on a relay that requires registration auth. Without it, such a
// relay refuses with 401; with a token not granted the name, 403.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithWarmPool keeps k callbacks parked at the relay (POST /v1/park), so
// that a dial finding one is spliced at once, without the round trip of a
// connect event and a callback; the listener parks a new one each time one
// is used. The relay caps k per registration (its park limit) and refuses
// parks beyond it; k <= 0, the default, parks nothing. Parked callbacks do
// not change what Accept returns: the same conns, with the same client
// address and name.
func WithWarmPool(k int) Option {
	return func(o *options) { o.warmPool = max(k, 0) }
}

// WithEarlyData makes a dialer's Dial return as soon as its request is
// written to the relay, without waiting for the relay's answer: the bytes
// the caller writes next travel behind the request, and the relay hands
// them to the server with the splice. A dial saves a round trip to the
// relay this way, as a protocol that speaks first (HTTP, a TLS
// handshake) would spend it waiting.
//
// The price is where a refusal shows. Without the option a refused dial
// (no such name, 503, 504, a bad token) is Dial's error, and a dialer
// given several relays tries the next one. With it, Dial fails only when
// the relay cannot be reached or the request cannot be written; a refusal
// is the error of the first Read (or WriteTo), of every Read after it and
// of every write from then on: a *RelayError wrapped as "endpoints: dial
// NAME: ...", as Dial would have returned it, and the dialer does not move
// to the next relay. What was written before it is lost. The wait for the
// answer is bounded by the conn's read deadline, not by the dial's
// timeout: a Read that times out before the answer came returns the
// timeout, and the next Read goes on waiting. For an MTLS dial the
// handshake's first message goes behind the request, and its first read
// is the one that meets a refusal: that is still DialContext's error,
// under its "tls handshake:" wrap, without a move to the next relay. The
// option has no effect on listeners.
func WithEarlyData() Option {
	return func(o *options) { o.earlyData = true }
}

// WithRedundancy makes a listener given several relay addresses hold n
// registrations of its name at once, each at a different relay (n >= 1,
// default 1; n above the number of addresses is taken as that number).
// Connect events from any of them feed the one Accept queue. When one
// registration is lost, the listener moves it to a relay it does not hold
// yet, while the others go on taking dials: with n >= 2, losing one relay
// loses no dial of a client that tries the next address (a RelayDialer
// given the same list does). Each registration keeps its own warm pool
// (WithWarmPool). Listen returns once the first registration is up and
// each further one has had one attempt at each free relay; those that got
// none keep trying in the background. In one cluster the registrations of
// a name at several nodes are a group, as on one relay: only authenticated
// ones (WithToken) may join, and a 409 ends that registration alone. n < 1
// makes Listen fail with ErrBadRedundancy.
func WithRedundancy(n int) Option {
	return func(o *options) { o.redundancy = n }
}

// WithDialToken sets the bearer token a dialer presents to dial a name
// whose dials the relay guards. Without it such a dial gets 401; with a
// wrong one, 403, before the server hears of it.
func WithDialToken(token string) Option {
	return func(o *options) { o.dialToken = token }
}

// WithRelayTLS sets the TLS configuration used toward an https:// relay:
// its RootCAs, and Certificates for mTLS to the relay. It is cloned per
// connection; an empty ServerName takes the relay's host, and NextProtos is
// forced to http/1.1. Without it, an https:// relay is verified against
// the system roots. It has no effect on http:// relays.
func WithRelayTLS(cfg *tls.Config) Option {
	return func(o *options) { o.relayTLS = cfg }
}

// WithDialTimeout bounds a whole dial: the connection to the relay, the
// wait for the server's callback, and the 101 (default 30s, longer than the
// relay's default 10s callback timeout). It applies on top of the context
// given to DialContext. Zero or less keeps the default.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.dialTimeout = d
		}
	}
}

// WithHandshakeTimeout bounds each exchange with the relay: the listen
// request up to its ready event, and each callback up to its 101
// (default 10s). A dial is bounded by its context and the relay's callback
// timeout instead.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handshake = d
		}
	}
}

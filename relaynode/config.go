package relaynode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/clusterlink-relay/relay/actors"
)

// Config configures a Node. The zero value is a working relay with safe
// defaults; each field documents its unit and default.
type Config struct {
	// Logger receives the node's logs: one info line per registration,
	// connections at debug. Nil discards.
	Logger *slog.Logger
	// NodeID names the relay in ready events and the Relay-Node header.
	// Empty means a random id.
	NodeID string

	// Heartbeat is the interval of the SSE heartbeat comment on every
	// registration stream, announced in the ready event. Default 15s.
	Heartbeat time.Duration
	// EventWriteTimeout bounds the write of one SSE event or heartbeat. A
	// stream that cannot take an event in that time is dropped, so one
	// stalled server never holds relay resources. Default 10s.
	EventWriteTimeout time.Duration
	// CallbackTimeout is how long a dial waits for the server's callback
	// before it is answered 504. Default 10s.
	CallbackTimeout time.Duration
	// ReadHeaderTimeout bounds the reading of request headers on servers the
	// Node runs itself (ListenAndServe, Serve). Default 5s.
	ReadHeaderTimeout time.Duration
	// MaxHeaderBytes bounds request headers on servers the Node runs
	// itself; larger requests get 431. Default 8 KiB.
	MaxHeaderBytes int
	// StreamSendBuffer caps the kernel send buffer of each registration
	// stream's socket, in bytes, so that a server that stops reading is
	// found by EventWriteTimeout after a few hundred events rather than
	// megabytes. Default 32 KiB (the kernel doubles it).
	StreamSendBuffer int
	// UpgradeWriteTimeout bounds the write of a 101 response after a
	// hijack. Default 5s.
	UpgradeWriteTimeout time.Duration

	// EventQueue is the number of events one registration may have queued
	// and unwritten; a dial that finds it full gets 503. Default 64.
	EventQueue int
	// MaxPendingPerName bounds the dials waiting on one registration; the
	// excess gets 503. Default 1024.
	MaxPendingPerName int
	// MaxParked caps the callbacks one registration may keep parked in its
	// warm pool (POST /v1/park); parks beyond it get 429. Parked callbacks
	// also count against MaxPending: a park is refused 503 once parked
	// callbacks and pending dials together reach it. Default 16; -1 turns
	// the warm pool off.
	MaxParked int
	// ParkTimeout is how long a parked callback is held without a dial
	// before it is answered 204 and parks again. Default 30s.
	ParkTimeout time.Duration
	// Mailboxes sets each actor kind's mailbox; zero fields take
	// actors.DefaultMailboxes. See docs/TUNING.md.
	Mailboxes actors.Mailboxes
	// CopyBuffer is the size in bytes of the pooled buffer a pair uses when
	// it cannot splice. Default 32 KiB.
	CopyBuffer int
	// Tombstones is the number of used tokens remembered so that a replay
	// gets 410 rather than 404 (either way it is refused). Default 4096.
	Tombstones int

	// PairIdleTimeout cuts a spliced pair when neither direction has moved
	// a byte for that long. Zero (the default) means never. With a limit
	// set, pairs copy in 1 MiB chunks (still splice(2)).
	PairIdleTimeout time.Duration
	// PairMaxDuration cuts a pair that long after it started. Zero (the
	// default) means never.
	PairMaxDuration time.Duration
	// PairMaxBytes cuts a pair once either direction has carried that many
	// bytes. Zero (the default) means no limit.
	PairMaxBytes int64

	// MaxRegistrations bounds live registrations overall; the excess gets
	// 503. Default 10000.
	MaxRegistrations int
	// MaxRegistrationsPerIP bounds live registrations from one client IP;
	// the excess gets 429. Default 64.
	MaxRegistrationsPerIP int
	// MaxPending bounds dials waiting for a callback, overall; the excess
	// gets 503. Default 10000.
	MaxPending int
	// MaxPairs bounds live spliced pairs overall; dials beyond it get 503.
	// Default 50000.
	MaxPairs int
	// DialRate is the sustained dials per second allowed from one client
	// IP, with bursts of DialBurst; the excess gets 429. Default 50/s,
	// burst 100. Negative turns the limit off.
	DialRate  float64
	DialBurst int
	// RateLimitBuckets is how many client IPs' rate limiters are kept, in a
	// 2Q LRU cache, so that a flood of addresses cannot grow memory: an
	// evicted IP starts again with a full bucket. Default 65536.
	RateLimitBuckets int
	// NegativeCacheTTL is how long a dial to an unregistered name is
	// answered 404 at the edge without asking the engine. A registration of
	// the name clears it. Default 2s; negative turns it off.
	NegativeCacheTTL time.Duration
	// NegativeCacheSize bounds the names in the negative cache. Default
	// 8192.
	NegativeCacheSize int

	// AuthFile, when set, turns on registration auth: a registration needs
	// a bearer token granted to its name by a register rule in this file,
	// or a verified TLS client certificate whose DNS SANs cover the name.
	// Dial rules there make a name's dials need a token too. See
	// docs/OPERATIONS.md for the format. Empty (with no client
	// certificates required) is open mode: anyone may register any free
	// name. Node.ReloadAuth reads it again.
	AuthFile string

	// TrustedProxies lists the networks of proxies the relay sits behind.
	// Only for a request whose peer is inside one of them is the client's
	// address taken from X-Forwarded-For: the rightmost address there that
	// is not itself a trusted proxy. Empty (the default) trusts nobody and
	// the client's address is the TCP peer's.
	TrustedProxies []netip.Prefix

	// MetricsPerName adds one relay_sse_queue_depth series per registered
	// name to /metrics. Off by default: names are unbounded.
	MetricsPerName bool

	// TLSCertFile and TLSKeyFile, when both set, make Serve and
	// ListenAndServe speak TLS with that PEM certificate chain and key.
	// Names and tokens are then hidden on the wire, and pairs copy through
	// a pooled buffer instead of splice(2).
	TLSCertFile string
	TLSKeyFile  string
	// TLSConfig, when set, makes Serve and ListenAndServe speak TLS with
	// it (cloned; certificates from TLSCertFile/TLSKeyFile are added).
	// Its NextProtos is forced to http/1.1 only: an HTTP/2 request cannot
	// be hijacked. Set ClientCAs and ClientAuth here for mTLS to the relay.
	TLSConfig *tls.Config
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.EventWriteTimeout == 0 {
		c.EventWriteTimeout = 10 * time.Second
	}
	if c.CallbackTimeout == 0 {
		c.CallbackTimeout = 10 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.UpgradeWriteTimeout == 0 {
		c.UpgradeWriteTimeout = 5 * time.Second
	}
	if c.ParkTimeout == 0 {
		c.ParkTimeout = 30 * time.Second
	}
	if c.StreamSendBuffer == 0 {
		c.StreamSendBuffer = 32 << 10
	}
	if c.MaxRegistrations == 0 {
		c.MaxRegistrations = 10000
	}
	if c.MaxRegistrationsPerIP == 0 {
		c.MaxRegistrationsPerIP = 64
	}
	if c.MaxPending == 0 {
		c.MaxPending = 10000
	}
	if c.MaxPairs == 0 {
		c.MaxPairs = 50000
	}
	if c.DialRate == 0 {
		c.DialRate = 50
	}
	if c.DialBurst == 0 {
		c.DialBurst = 2 * int(max(c.DialRate, 1))
	}
	if c.RateLimitBuckets == 0 {
		c.RateLimitBuckets = 1 << 16
	}
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = 2 * time.Second
	}
	if c.NegativeCacheSize == 0 {
		c.NegativeCacheSize = 8192
	}
}

// Validate reports every nonsensical field of c.
func (c *Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Heartbeat", c.Heartbeat}, {"EventWriteTimeout", c.EventWriteTimeout},
		{"CallbackTimeout", c.CallbackTimeout}, {"ReadHeaderTimeout", c.ReadHeaderTimeout},
		{"UpgradeWriteTimeout", c.UpgradeWriteTimeout}, {"ParkTimeout", c.ParkTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("relaynode: %s %v is negative", d.name, d.v))
		}
	}
	if c.Heartbeat > 0 && c.Heartbeat < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("relaynode: Heartbeat %v is below 10ms", c.Heartbeat))
	}
	for _, v := range []struct {
		name string
		n    int
	}{
		{"StreamSendBuffer", c.StreamSendBuffer}, {"MaxRegistrations", c.MaxRegistrations}, {"MaxRegistrationsPerIP", c.MaxRegistrationsPerIP},
		{"MaxPending", c.MaxPending}, {"MaxPairs", c.MaxPairs}, {"DialBurst", c.DialBurst},
		{"RateLimitBuckets", c.RateLimitBuckets}, {"NegativeCacheSize", c.NegativeCacheSize},
	} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("relaynode: %s %d is negative", v.name, v.n))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("relaynode: TLSCertFile and TLSKeyFile go together"))
	}
	if c.MaxHeaderBytes < 0 || (c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 1024) {
		errs = append(errs, fmt.Errorf("relaynode: MaxHeaderBytes %d is below 1024", c.MaxHeaderBytes))
	}
	ec := c.engineConfig()
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tlsConfig returns the TLS configuration Serve uses, or nil for plain TCP.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSConfig == nil && c.TLSCertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		cfg = c.TLSConfig.Clone()
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("relaynode: load TLS key pair: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New("relaynode: TLSConfig has no certificate")
	}
	cfg.NextProtos = []string{"http/1.1"}
	return cfg, nil
}

func (c *Config) engineConfig() actors.Config {
	return actors.Config{
		Logger:            c.Logger,
		NodeID:            c.NodeID,
		Mailboxes:         c.Mailboxes,
		EventQueue:        c.EventQueue,
		CallbackTimeout:   c.CallbackTimeout,
		MaxPendingPerName: c.MaxPendingPerName,
		MaxParked:         c.MaxParked,
		CopyBuffer:        c.CopyBuffer,
		Tombstones:        c.Tombstones,
		PairIdleTimeout:   c.PairIdleTimeout,
		PairMaxDuration:   c.PairMaxDuration,
		PairMaxBytes:      c.PairMaxBytes,
	}
}

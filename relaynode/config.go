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
	// Version is the release the node reports in Status and on /status.
	// Empty means the relay module's version as Go recorded it in the
	// binary (runtime/debug.ReadBuildInfo), or "(devel)" without one. The
	// relaynode binary sets it to what -version prints first.
	Version string

	// Heartbeat is the interval of the SSE heartbeat comment on every
	// registration stream, announced in the ready event. Default 15s.
	Heartbeat time.Duration
	// EventWriteTimeout bounds the write of one SSE event or heartbeat. A
	// stream that cannot take an event in that time is dropped, so one
	// stalled server never holds relay resources. Default 10s.
	EventWriteTimeout time.Duration
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

	// ParkTimeout is how long a parked callback is held without a dial
	// before it is answered 204 and parks again. Default 30s.
	ParkTimeout time.Duration
	// Mailboxes sets each actor kind's mailbox; zero fields take
	// actors.DefaultMailboxes(). See docs/TUNING.md.
	Mailboxes actors.Mailboxes
	// Limits are the engine's limits (EventQueue, CallbackTimeout,
	// MaxPendingPerName, MaxParked, Tombstones, CopyBuffer and the pair
	// limits), each documented with its default in actors.Limits. Parked
	// callbacks also count against MaxPending: a park is refused 503 once
	// parked callbacks and pending dials together reach it.
	actors.Limits

	// MaxRegistrations bounds live registrations overall; the excess gets
	// 503. Default 10000.
	MaxRegistrations int
	// MaxRegistrationsPerIP bounds live registrations from one client
	// prefix (see IPv4Prefix); the excess gets 429. Default 64.
	MaxRegistrationsPerIP int
	// MaxPending bounds dials waiting for a callback, overall; the excess
	// gets 503. Default 10000.
	MaxPending int
	// MaxPendingPerIP bounds the dials waiting for a callback plus the
	// callbacks parked, from one client prefix; the excess gets 429.
	// Default 2048: at the default rate one host could otherwise fill
	// MaxPending alone, with dials to a server that never calls back.
	MaxPendingPerIP int
	// MaxPairs bounds live spliced pairs overall; dials beyond it get 503.
	// Default 50000.
	MaxPairs int
	// DialRate is the sustained dials per second allowed from one client
	// prefix, with bursts of DialBurst; the excess gets 429. Default
	// 20000/s, above what any one host reaches on the test machine (see
	// docs/OPERATIONS.md), so that a load test from one host is never
	// refused; a public relay sets it lower. Negative turns the limit off.
	DialRate float64
	// DialBurst is the burst of DialRate. Zero follows DialRate: 2 ×
	// DialRate (rounded down, at least 2).
	DialBurst int
	// RateLimitBuckets is how many client prefixes' rate limiters are kept,
	// in a 2Q LRU cache, so that a flood of addresses cannot grow memory:
	// an evicted prefix starts again with a full bucket. Default 65536.
	RateLimitBuckets int
	// IPv4Prefix and IPv6Prefix are the prefix lengths that group client
	// addresses for every per-client limit (registrations, dial rate,
	// pending dials and parks, connections waiting for headers): anyone
	// with an IPv6 /64 has its whole /64, so counting each address would
	// give it unlimited budgets. IPv4-mapped IPv6 addresses count as IPv4.
	// Defaults 32 and 64.
	IPv4Prefix int
	IPv6Prefix int
	// MaxHeaderWaitPerIP bounds the connections from one client prefix
	// that have not finished their request headers (or sit idle between
	// requests), on servers the Node runs itself; a connection beyond it
	// is answered 429 and closed at once. Connections from TrustedProxies
	// are not counted. Default 1024; negative turns it off.
	MaxHeaderWaitPerIP int
	// FDReserve is the number of file descriptors the node holds in
	// reserve, on servers it runs itself: when accepting fails because the
	// process is at its fd limit, one is released to accept the waiting
	// connection and refuse it at once (503), rather than leave clients
	// stalled until the limit clears. Default 8; negative turns it off.
	FDReserve int
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

	// CompatV0 also serves the original clusterlink relay's wire (v0):
	// /serverconn, /clientconn and /servercallback, for servers and
	// clients not yet moved to this protocol. v0 matching is
	// unauthenticated beyond a source-IP check on the callback, so it is
	// off by default and the node logs a warning when it is on. See the
	// "v0 compatibility" sections of docs/PROTOCOL.md and
	// docs/OPERATIONS.md.
	CompatV0 bool

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

	// ClusterEtcd, when set, joins the node to a cluster of relays that
	// share one name space, in etcd at these endpoints (host:port or
	// URLs): a server registered at any node is reachable from every node,
	// and a dial's bytes are spliced on the node the client dialed. Empty
	// (the default) is one node with an in-memory directory. A clustered
	// node needs NodeID, ClusterListen and Advertise; see the cluster
	// section of docs/OPERATIONS.md.
	ClusterEtcd []string
	// ClusterListen is the host:port of the cluster port, where the other
	// nodes send control messages (protoactor-go remote over gRPC); port 0
	// picks a free one (Node.ClusterAddr reports it). On a wildcard host
	// (":7101", "0.0.0.0:7101") peers are told Advertise's host with this
	// port, which must then be fixed. Plaintext is allowed only on a
	// loopback address; elsewhere set the ClusterTLS files.
	ClusterListen string
	// Advertise is the node's public URL, such as https://relay-1:8443:
	// servers whose dial landed on this node call back to it.
	Advertise string
	// ClusterLeaseTTL is the TTL of the node's etcd lease: how long the
	// names of a node that died stay in the directory. Default 5s, at
	// least 1s.
	ClusterLeaseTTL time.Duration
	// ClusterTLSCertFile, ClusterTLSKeyFile and ClusterTLSCAFile, all
	// three or none, make the cluster port mutual TLS: it accepts only
	// peers presenting a certificate from the CA, and dials peers with
	// the node's certificate, verifying theirs against the CA (the chain
	// only: peers are dialed by address).
	ClusterTLSCertFile string
	ClusterTLSKeyFile  string
	ClusterTLSCAFile   string
	// EtcdTLSCertFile and EtcdTLSKeyFile are a client certificate for
	// etcd; EtcdTLSCAFile verifies etcd's. Any of them turns TLS to etcd
	// on.
	EtcdTLSCertFile string
	EtcdTLSKeyFile  string
	EtcdTLSCAFile   string
	// EtcdUser and EtcdPassword authenticate to etcd. The binary reads
	// the password from RELAYNODE_ETCD_PASSWORD only, never a flag.
	EtcdUser     string
	EtcdPassword string
}

// WithDefaults returns a copy of c (see Clone) with every zero field set
// to its default: the configuration New runs with.
func (c Config) WithDefaults() Config {
	d := c.Clone()
	d.setDefaults()
	return d
}

// Clone returns a copy of c that shares nothing mutable with it: the
// TrustedProxies and ClusterEtcd slices are copied and TLSConfig cloned. The Logger is
// shared.
func (c Config) Clone() Config {
	if c.TrustedProxies != nil {
		c.TrustedProxies = append([]netip.Prefix(nil), c.TrustedProxies...)
	}
	if c.ClusterEtcd != nil {
		c.ClusterEtcd = append([]string(nil), c.ClusterEtcd...)
	}
	if c.TLSConfig != nil {
		c.TLSConfig = c.TLSConfig.Clone()
	}
	return c
}

// setDefaults states the node's own defaults; the engine's are in
// actors.Limits.WithDefaults.
func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Limits = c.Limits.WithDefaults()
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{
		{&c.Heartbeat, 15 * time.Second}, {&c.EventWriteTimeout, 10 * time.Second},
		{&c.ReadHeaderTimeout, 5 * time.Second}, {&c.UpgradeWriteTimeout, 5 * time.Second},
		{&c.ParkTimeout, 30 * time.Second}, {&c.NegativeCacheTTL, 2 * time.Second},
	} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
	for _, d := range []struct {
		p *int
		v int
	}{
		{&c.MaxHeaderBytes, 8 << 10}, {&c.StreamSendBuffer, 32 << 10},
		{&c.MaxRegistrations, 10000}, {&c.MaxRegistrationsPerIP, 64},
		{&c.MaxPending, 10000}, {&c.MaxPendingPerIP, 2048}, {&c.MaxPairs, 50000},
		{&c.RateLimitBuckets, 1 << 16}, {&c.NegativeCacheSize, 8192},
		{&c.IPv4Prefix, 32}, {&c.IPv6Prefix, 64},
		{&c.MaxHeaderWaitPerIP, 1024}, {&c.FDReserve, 8},
	} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
	if c.DialRate == 0 {
		c.DialRate = 20000
	}
	if c.DialBurst == 0 {
		c.DialBurst = 2 * int(max(c.DialRate, 1))
	}
	if len(c.ClusterEtcd) > 0 {
		if c.ClusterLeaseTTL == 0 {
			c.ClusterLeaseTTL = 5 * time.Second
		}
		// A dial's name may be registered at another node at any time,
		// unseen by this node's edge: no negative cache in a cluster.
		c.NegativeCacheTTL = -1
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
		{"ReadHeaderTimeout", c.ReadHeaderTimeout},
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
		{"MaxPending", c.MaxPending}, {"MaxPendingPerIP", c.MaxPendingPerIP}, {"MaxPairs", c.MaxPairs}, {"DialBurst", c.DialBurst},
		{"RateLimitBuckets", c.RateLimitBuckets}, {"NegativeCacheSize", c.NegativeCacheSize},
	} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("relaynode: %s %d is negative", v.name, v.n))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("relaynode: TLSCertFile and TLSKeyFile go together"))
	}
	if c.IPv4Prefix < 0 || c.IPv4Prefix > 32 {
		errs = append(errs, fmt.Errorf("relaynode: IPv4Prefix %d out of range [1, 32]", c.IPv4Prefix))
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("relaynode: IPv6Prefix %d out of range [1, 128]", c.IPv6Prefix))
	}
	if c.MaxHeaderBytes < 0 || (c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 1024) {
		errs = append(errs, fmt.Errorf("relaynode: MaxHeaderBytes %d is below 1024", c.MaxHeaderBytes))
	}
	ec := c.engineConfig()
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateCluster(); err != nil {
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
	return actors.Config{Logger: c.Logger, NodeID: c.NodeID, Mailboxes: c.Mailboxes, Limits: c.Limits}
}

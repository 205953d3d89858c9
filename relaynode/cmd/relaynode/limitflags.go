package main

import (
	"flag"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
)

// limitFlags defines the flags of the limits group on fs, each bound to its
// field of cfg, and returns their names in -h order. Every default is 0,
// which means the Config's own default (relaynode.Config.WithDefaults):
// the defaults are stated once, in the Config, and -h prints the
// effective value (effectiveDefaults).
func limitFlags(fs *flag.FlagSet, cfg *relaynode.Config) []string {
	var names []string
	dur := func(p *time.Duration, name, usage string) {
		fs.DurationVar(p, name, 0, usage)
		names = append(names, name)
	}
	num := func(p *int, name, usage string) {
		fs.IntVar(p, name, 0, usage)
		names = append(names, name)
	}
	dur(&cfg.Heartbeat, "heartbeat", "interval of SSE heartbeats on registration streams")
	dur(&cfg.CallbackTimeout, "callback-timeout", "how long a dial waits for the server's callback before 504")
	dur(&cfg.EventWriteTimeout, "event-write-timeout", "deadline for writing one SSE event; a stream that misses it is dropped")
	dur(&cfg.ReadHeaderTimeout, "read-header-timeout", "deadline for reading request headers")
	num(&cfg.MaxHeaderBytes, "max-header-bytes", "request header size limit in bytes; net/http accepts 4096 more, 431 beyond")
	num(&cfg.StreamSendBuffer, "stream-send-buffer", "kernel send buffer of each registration stream, in bytes")
	num(&cfg.EventQueue, "event-queue", "SSE events one registration may have queued; a dial finding it full gets 503")
	num(&cfg.MaxPendingPerName, "max-pending-per-name", "dials that may wait on one registration")
	num(&cfg.MaxParked, "max-parked", "callbacks one registration may keep parked in its warm pool (429 beyond; -1: no warm pool)")
	dur(&cfg.ParkTimeout, "park-timeout", "how long a parked callback waits for a dial before 204 (it parks again)")
	num(&cfg.MaxPending, "max-pending", "dials that may wait for a callback, overall (503 beyond)")
	num(&cfg.MaxPendingPerIP, "max-pending-per-ip", "dials waiting plus callbacks parked from one client prefix (429 beyond)")
	num(&cfg.MaxRegistrations, "max-registrations", "live registrations, overall (503 beyond)")
	num(&cfg.MaxRegistrationsPerIP, "max-registrations-per-ip", "live registrations from one client prefix (429 beyond)")
	num(&cfg.MaxPairs, "max-pairs", "live spliced pairs, overall (dials 503 beyond)")
	fs.Float64Var(&cfg.DialRate, "dial-rate", 0, "dials per second allowed from one client prefix (429 beyond; negative: off)")
	names = append(names, "dial-rate")
	num(&cfg.DialBurst, "dial-burst", "dial burst allowed from one client prefix (0: follow -dial-rate, 2 × it)")
	num(&cfg.RateLimitBuckets, "rate-limit-buckets", "client prefixes whose dial-rate buckets are kept (2Q LRU)")
	num(&cfg.IPv4Prefix, "ipv4-prefix", "prefix length that groups IPv4 client addresses for the per-client limits")
	num(&cfg.IPv6Prefix, "ipv6-prefix", "prefix length that groups IPv6 client addresses for the per-client limits")
	num(&cfg.MaxHeaderWaitPerIP, "max-header-wait-per-ip", "connections from one client prefix with request headers unfinished (429 and closed beyond; negative: off)")
	num(&cfg.FDReserve, "fd-reserve", "file descriptors held back to refuse connections at once at the fd limit (negative: off)")
	dur(&cfg.NegativeCacheTTL, "negative-cache-ttl", "how long a dial to an unregistered name is answered 404 at the edge (negative: off)")
	num(&cfg.NegativeCacheSize, "negative-cache-size", "names kept in the negative cache")
	num(&cfg.Tombstones, "tombstones", "used tokens remembered so that a replay gets 410 (refused as 404 after eviction)")
	dur(&cfg.PairIdleTimeout, "pair-idle-timeout", "cut a spliced pair after this long with no byte either way (0: never)")
	dur(&cfg.PairMaxDuration, "pair-max-duration", "cut a spliced pair this long after it started (0: never)")
	fs.Int64Var(&cfg.PairMaxBytes, "pair-max-bytes", 0, "cut a spliced pair once either direction carried this many bytes (0: no limit)")
	names = append(names, "pair-max-bytes")
	return names
}

// effectiveDefaults returns the value each limit flag stands for when it is
// not given, as -h prints it: the zero Config's defaults.
func effectiveDefaults() map[string]string {
	fs := flag.NewFlagSet("defaults", flag.ContinueOnError)
	var d relaynode.Config
	limitFlags(fs, &d)
	d = d.WithDefaults() // the flags' values point into d
	out := make(map[string]string)
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

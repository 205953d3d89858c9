package relaynode

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/clusterlink-relay/relay/actors"
)

// clientKey is the group a client address counts in for every per-client
// limit: its prefix of IPv4Prefix or IPv6Prefix bits.
type clientKey = netip.Prefix

// keyOf returns the client key of addr: addr without its zone, unmapped
// from IPv4-mapped IPv6, masked to v4 bits if it is IPv4 and to v6 bits
// otherwise. The zero Addr (an address that did not parse) gives the zero
// key, which all such clients share.
func keyOf(addr netip.Addr, v4, v6 int) clientKey {
	if !addr.IsValid() {
		return clientKey{}
	}
	addr = addr.Unmap().WithZone("")
	bits := v6
	if addr.Is4() {
		bits = v4
	}
	p, err := addr.Prefix(bits)
	if err != nil { // bits out of range, which Validate rules out
		return netip.PrefixFrom(addr, addr.BitLen())
	}
	return p
}

// edge holds the limits the node applies before any actor is involved.
// Every refusal here is cheap: a map or cache lookup under a short lock.
type edge struct {
	cfg *Config

	mu      sync.Mutex        // guards the following
	regs    int               // live registrations
	regsIP  map[clientKey]int // live registrations per client key
	waitIP  map[clientKey]int // dials in flight plus parks, per client key
	names   map[string]int    // live registrations per name
	limiter *lru.TwoQueueCache[clientKey, *rate.Limiter]
	unknown *lru.Cache[string, time.Time] // name → until when it is known unknown
}

func newEdge(cfg *Config) *edge {
	lim, err := lru.New2Q[clientKey, *rate.Limiter](cfg.RateLimitBuckets)
	if err != nil { // only for a size <= 0, which setDefaults rules out
		panic(err)
	}
	unk, err := lru.New[string, time.Time](cfg.NegativeCacheSize)
	if err != nil {
		panic(err)
	}
	return &edge{
		cfg: cfg, limiter: lim, unknown: unk,
		regsIP: make(map[clientKey]int), waitIP: make(map[clientKey]int), names: make(map[string]int),
	}
}

// Refusals decided at the edge, in the engine's refusal type.
var (
	refuseTooManyRegs      = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many registrations"}
	refuseTooManyRegsIP    = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "too many registrations from this address"}
	refuseTooManyPending   = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many pending dials"}
	refuseTooManyPendingIP = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "too many pending dials from this address"}
	refuseTooManyPairs     = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many live connections"}
	refuseDialRate         = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "dial rate limit"}
	refuseUnknownNameCache = &actors.Refusal{Status: http.StatusNotFound, Reason: "unknown name"}
	refuseTooManyParked    = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many parked callbacks"}
	refuseTooManyParkedIP  = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "too many parked callbacks from this address"}
	refuseHeaderWaitIP     = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "too many unfinished requests from this address"}
	refuseFDLimit          = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "relay at its connection limit"}
)

// ipOf returns the IP of a host:port, or the zero Addr.
func ipOf(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// key returns the client key of a host:port.
func (e *edge) key(addr string) clientKey {
	return keyOf(ipOf(addr), e.cfg.IPv4Prefix, e.cfg.IPv6Prefix)
}

// admitRegistration reserves a registration slot for k, or refuses. The
// caller must call releaseRegistration once the registration ends.
func (e *edge) admitRegistration(k clientKey) *actors.Refusal {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.regs >= e.cfg.MaxRegistrations {
		return refuseTooManyRegs
	}
	if e.regsIP[k] >= e.cfg.MaxRegistrationsPerIP {
		return refuseTooManyRegsIP
	}
	e.regs++
	e.regsIP[k]++
	return nil
}

func (e *edge) releaseRegistration(k clientKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.regs--
	if e.regsIP[k]--; e.regsIP[k] <= 0 {
		delete(e.regsIP, k)
	}
}

// nameUp and nameDown count the live registrations of name, so that a dial
// over its rate to a name with none is answered 404, as it would be
// without the limit, rather than 429.
func (e *edge) nameUp(name string) {
	e.mu.Lock()
	e.names[name]++
	e.mu.Unlock()
	e.unknown.Remove(name)
}

func (e *edge) nameDown(name string) {
	e.mu.Lock()
	if e.names[name]--; e.names[name] <= 0 {
		delete(e.names, name)
	}
	e.mu.Unlock()
}

// limiterFor returns k's rate limiter, creating it with a full bucket. The
// lookup and the insertion happen under e.mu, so that two first dials of
// one key share one bucket.
func (e *edge) limiterFor(k clientKey) *rate.Limiter {
	e.mu.Lock()
	defer e.mu.Unlock()
	lim, ok := e.limiter.Get(k)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(e.cfg.DialRate), e.cfg.DialBurst)
		e.limiter.Add(k, lim)
	}
	return lim
}

// admitDial applies the dial-side limits: the negative cache of unknown
// names, the per-key rate, the per-key and overall caps on pending dials,
// and the cap on pairs. On nil the dial holds one of k's waiting slots,
// which the caller must give back with release.
func (e *edge) admitDial(k clientKey, name string, engine *actors.Engine) *actors.Refusal {
	if until, ok := e.unknown.Get(name); ok && time.Now().Before(until) {
		return refuseUnknownNameCache
	}
	if e.cfg.DialRate > 0 && !e.limiterFor(k).Allow() {
		return e.unlessUnknown(name, refuseDialRate, engine)
	}
	if engine.Live(actors.KindPending) >= int64(e.cfg.MaxPending) {
		return refuseTooManyPending
	}
	if engine.Live(actors.KindPair) >= int64(e.cfg.MaxPairs) {
		return refuseTooManyPairs
	}
	if rf := e.reserve(k, refuseTooManyPendingIP); rf != nil {
		return e.unlessUnknown(name, rf, engine)
	}
	return nil
}

// unlessUnknown returns rf, a per-client refusal, or 404 when name has no
// live registration: a client over its budget still learns that a name is
// unknown, as it would under the budget, and never takes a 429 for it.
func (e *edge) unlessUnknown(name string, rf *actors.Refusal, engine *actors.Engine) *actors.Refusal {
	e.mu.Lock()
	live := e.names[name] > 0
	e.mu.Unlock()
	if dir := engine.ClusterDirectory(); !live && dir != nil {
		// Held at another node of the cluster.
		live = len(dir.Members(name)) > 0
	}
	if !live {
		return refuseUnknownNameCache
	}
	return rf
}

// reserve takes one of k's waiting slots (a dial in flight or a parked
// callback), or refuses with rf when k holds MaxPendingPerIP of them.
func (e *edge) reserve(k clientKey, rf *actors.Refusal) *actors.Refusal {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.waitIP[k] >= e.cfg.MaxPendingPerIP {
		return rf
	}
	e.waitIP[k]++
	return nil
}

// release gives back a waiting slot taken by admitDial or admitPark.
func (e *edge) release(k clientKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.waitIP[k]--; e.waitIP[k] <= 0 {
		delete(e.waitIP, k)
	}
}

// admitPark checks the overall cap a parked callback counts against:
// parked callbacks and pending dials together stay within MaxPending. Like
// the other overall caps it is checked, not reserved: concurrent parks may
// pass it by the number of handlers running at once. Then it reserves one
// of k's waiting slots, which the caller must give back with release.
func (e *edge) admitPark(k clientKey, engine *actors.Engine) *actors.Refusal {
	if engine.Live(actors.KindPending)+engine.Parked() >= int64(e.cfg.MaxPending) {
		return refuseTooManyParked
	}
	return e.reserve(k, refuseTooManyParkedIP)
}

// unknownName remembers that name was not registered, for the negative
// cache's TTL.
func (e *edge) unknownName(name string) {
	if e.cfg.NegativeCacheTTL > 0 {
		e.unknown.Add(name, time.Now().Add(e.cfg.NegativeCacheTTL))
	}
}

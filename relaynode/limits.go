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

// edge holds the limits the node applies before any actor is involved.
// Every refusal here is cheap: a map or cache lookup under a short lock.
type edge struct {
	cfg *Config

	mu      sync.Mutex         // guards the following
	regs    int                // live registrations
	regsIP  map[netip.Addr]int // live registrations per client IP
	limiter *lru.TwoQueueCache[netip.Addr, *rate.Limiter]
	unknown *lru.Cache[string, time.Time] // name → until when it is known unknown
}

func newEdge(cfg *Config) *edge {
	lim, err := lru.New2Q[netip.Addr, *rate.Limiter](cfg.RateLimitBuckets)
	if err != nil { // only for a size <= 0, which setDefaults rules out
		panic(err)
	}
	unk, err := lru.New[string, time.Time](cfg.NegativeCacheSize)
	if err != nil {
		panic(err)
	}
	return &edge{cfg: cfg, regsIP: make(map[netip.Addr]int), limiter: lim, unknown: unk}
}

// Refusals decided at the edge, in the engine's refusal type.
var (
	refuseTooManyRegs      = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many registrations"}
	refuseTooManyRegsIP    = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "too many registrations from this address"}
	refuseTooManyPending   = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many pending dials"}
	refuseTooManyPairs     = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many live connections"}
	refuseDialRate         = &actors.Refusal{Status: http.StatusTooManyRequests, Reason: "dial rate limit"}
	refuseUnknownNameCache = &actors.Refusal{Status: http.StatusNotFound, Reason: "unknown name"}
	refuseTooManyParked    = &actors.Refusal{Status: http.StatusServiceUnavailable, Reason: "too many parked callbacks"}
)

// ipOf returns the IP of a host:port, or the zero Addr.
func ipOf(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// admitRegistration reserves a registration slot for ip, or refuses. The
// caller must call release once the registration ends.
func (e *edge) admitRegistration(ip netip.Addr) *actors.Refusal {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.regs >= e.cfg.MaxRegistrations {
		return refuseTooManyRegs
	}
	if e.regsIP[ip] >= e.cfg.MaxRegistrationsPerIP {
		return refuseTooManyRegsIP
	}
	e.regs++
	e.regsIP[ip]++
	return nil
}

func (e *edge) releaseRegistration(ip netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.regs--
	if e.regsIP[ip]--; e.regsIP[ip] <= 0 {
		delete(e.regsIP, ip)
	}
}

// admitDial applies the dial-side limits: the per-IP rate, the negative
// cache of unknown names, and the overall caps on pending dials and pairs.
func (e *edge) admitDial(ip netip.Addr, name string, engine *actors.Engine) *actors.Refusal {
	if e.cfg.DialRate > 0 {
		lim, ok := e.limiter.Get(ip)
		if !ok {
			lim = rate.NewLimiter(rate.Limit(e.cfg.DialRate), e.cfg.DialBurst)
			e.limiter.Add(ip, lim)
		}
		if !lim.Allow() {
			return refuseDialRate
		}
	}
	if until, ok := e.unknown.Get(name); ok && time.Now().Before(until) {
		return refuseUnknownNameCache
	}
	if engine.Live(actors.KindPending) >= int64(e.cfg.MaxPending) {
		return refuseTooManyPending
	}
	if engine.Live(actors.KindPair) >= int64(e.cfg.MaxPairs) {
		return refuseTooManyPairs
	}
	return nil
}

// admitPark checks the overall cap a parked callback counts against: parked
// callbacks and pending dials together stay within MaxPending. Like the
// other caps it is checked, not reserved: concurrent parks may pass it by
// the number of handlers running at once.
func (e *edge) admitPark(engine *actors.Engine) *actors.Refusal {
	if engine.Live(actors.KindPending)+engine.Parked() >= int64(e.cfg.MaxPending) {
		return refuseTooManyParked
	}
	return nil
}

// unknownName remembers that name was not registered, for the negative
// cache's TTL.
func (e *edge) unknownName(name string) {
	if e.cfg.NegativeCacheTTL > 0 {
		e.unknown.Add(name, time.Now().Add(e.cfg.NegativeCacheTTL))
	}
}

// knownName forgets a negative entry: name has just been registered.
func (e *edge) knownName(name string) { e.unknown.Remove(name) }

package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Kind names an actor kind.
type Kind int

// The actor kinds.
const (
	KindDirectory Kind = iota
	KindListener
	KindPending
	KindPair
	numKinds
)

const (
	kindDirectory = KindDirectory
	kindListener  = KindListener
	kindPending   = KindPending
	kindPair      = KindPair
)

// String returns the kind's name as used in config keys and metrics.
func (k Kind) String() string {
	return [...]string{"directory", "listener", "pending", "pair"}[k]
}

// Reasons a pair is cut by a limit.
const (
	cutIdle = iota
	cutDuration
	cutBytes
	numCuts
)

// stats are the engine's counters. All fields are atomics, written from
// actors and copy goroutines and read by Snapshot.
type stats struct {
	live [numKinds]atomic.Int64
	// zero[k], made by a waiter and closed when live[k] falls to zero;
	// zeroWaiters[k] spares stopped the lock while nobody waits.
	zeroMu      sync.Mutex
	zero        [numKinds]chan struct{}
	zeroWaiters [numKinds]atomic.Int32
	posted      [numKinds]atomic.Int64
	processed   [numKinds]atomic.Int64

	spliced        atomic.Int64
	expired        atomic.Int64
	queueFull      atomic.Int64
	foreignToken   atomic.Int64
	pairingsFailed atomic.Int64
	replaced       atomic.Int64
	pairsCut       [numCuts]atomic.Int64
	bytes          [2]atomic.Int64
	spliceLatency  histogram // from a dial reaching its listener to the start of its pair
	// spliceLatencyWarm is spliceLatency for dials handed to a parked
	// callback.
	spliceLatencyWarm histogram
	parked            atomic.Int64 // callbacks in warm pools
}

func (s *stats) started(k Kind) { s.live[k].Add(1) }

func (s *stats) stopped(k Kind) {
	// The waiter count is read after the decrement, and a waiter counts
	// itself before it reads live: one of the two sees the other.
	if s.live[k].Add(-1) == 0 && s.zeroWaiters[k].Load() > 0 {
		s.zeroMu.Lock()
		if c := s.zero[k]; c != nil {
			close(c)
			s.zero[k] = nil
		}
		s.zeroMu.Unlock()
	}
}

// waitZero returns nil once no actor of kind k is live, or ctx's error.
// Nothing is polled: the actor that brings the count to zero closes the
// channel the waiters hold.
func (s *stats) waitZero(ctx context.Context, k Kind) error {
	s.zeroWaiters[k].Add(1)
	defer s.zeroWaiters[k].Add(-1)
	for {
		s.zeroMu.Lock()
		c := s.zero[k]
		if c == nil {
			c = make(chan struct{})
			s.zero[k] = c
		}
		s.zeroMu.Unlock()
		if s.live[k].Load() <= 0 {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// LatencyBuckets are the upper bounds of the engine's latency histogram,
// in seconds: 100µs to about 3.3s, doubling.
var LatencyBuckets = func() []float64 {
	b := make([]float64, 16)
	for i := range b {
		b[i] = 100e-6 * float64(int(1)<<i)
	}
	return b
}()

// histogram is a fixed-bucket histogram of durations kept in atomics, so
// observing costs two atomic adds and scraping takes no lock.
type histogram struct {
	counts [17]atomic.Uint64 // one per bucket, the last for +Inf
	sum    atomic.Int64      // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && sec > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram: Counts[i] observations
// fell in bucket i (not cumulative; the last is above every bound).
type Histogram struct {
	Counts []uint64
	Sum    time.Duration
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// mailbox returns a mailbox middleware that counts kind k's messages, so
// that depth is posted minus processed. It is our own: the actor system's
// OpenTelemetry gauge reports nothing, and enabling it costs far more.
func (s *stats) mailbox(k Kind) actor.MailboxMiddleware { return mailboxCounter{s, k} }

type mailboxCounter struct {
	s *stats
	k Kind
}

func (m mailboxCounter) MailboxStarted()     {}
func (m mailboxCounter) MessagePosted(any)   { m.s.posted[m.k].Add(1) }
func (m mailboxCounter) MessageReceived(any) { m.s.processed[m.k].Add(1) }
func (m mailboxCounter) MailboxEmpty()       {}

// KindStats are one actor kind's figures.
type KindStats struct {
	// Live is the number of actors of the kind now running, counted from
	// their spawn to their Stopped.
	Live int64
	// Processed is the number of messages they have processed.
	Processed int64
	// Queued is the number of messages posted and not yet processed.
	Queued int64
}

// Stats is a snapshot of the engine's counters.
type Stats struct {
	// Kinds holds each actor kind's figures, indexed by Kind.
	Kinds [numKinds]KindStats
	// Spliced counts pairs started.
	Spliced int64
	// Expired counts dials answered 504.
	Expired int64
	// QueueFull counts dials refused because the registration's event
	// queue was full.
	QueueFull int64
	// ForeignToken counts callbacks refused for presenting another
	// registration's token.
	ForeignToken int64
	// PairingsFailed counts matches where one side never arrived.
	PairingsFailed int64
	// Replaced counts registrations taken over by their own reconnect.
	Replaced int64
	// PairsIdle, PairsMaxDuration and PairsMaxBytes count pairs cut by
	// each limit.
	PairsIdle        int64
	PairsMaxDuration int64
	PairsMaxBytes    int64
	// BytesToServer and BytesToClient count relayed bytes each way.
	BytesToServer int64
	BytesToClient int64
	// SpliceLatency is the time from a dial reaching its registration to
	// the start of its pair, over LatencyBuckets, for dials served by a
	// callback answering a connect event (cold).
	SpliceLatency Histogram
	// SpliceLatencyWarm is the same for dials handed to a parked callback
	// (warm pool).
	SpliceLatencyWarm Histogram
	// Parked is the number of callbacks parked in warm pools.
	Parked int64
}

func (s *stats) snapshot() Stats {
	var out Stats
	for k := range numKinds {
		p := s.processed[k].Load()
		out.Kinds[k] = KindStats{Live: s.live[k].Load(), Processed: p, Queued: s.posted[k].Load() - p}
	}
	out.Spliced = s.spliced.Load()
	out.Expired = s.expired.Load()
	out.QueueFull = s.queueFull.Load()
	out.ForeignToken = s.foreignToken.Load()
	out.PairingsFailed = s.pairingsFailed.Load()
	out.Replaced = s.replaced.Load()
	out.PairsIdle = s.pairsCut[cutIdle].Load()
	out.PairsMaxDuration = s.pairsCut[cutDuration].Load()
	out.PairsMaxBytes = s.pairsCut[cutBytes].Load()
	out.BytesToServer = s.bytes[toServer].Load()
	out.BytesToClient = s.bytes[toClient].Load()
	out.SpliceLatency = s.spliceLatency.snapshot()
	out.SpliceLatencyWarm = s.spliceLatencyWarm.snapshot()
	out.Parked = s.parked.Load()
	return out
}

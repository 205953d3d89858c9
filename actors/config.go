package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// MailboxKind selects a protoactor-go mailbox implementation.
type MailboxKind string

// The mailbox kinds.
const (
	// MailboxUnbounded is a mutex-guarded unbounded queue.
	MailboxUnbounded MailboxKind = "unbounded"
	// MailboxUnboundedLockfree is a lock-free unbounded MPSC queue.
	MailboxUnboundedLockfree MailboxKind = "unbounded-lockfree"
	// MailboxBounded is a ring buffer of Size slots (rounded up to a power
	// of two, preallocated at about 28 B a slot). When it is full, senders
	// busy-spin until a slot frees: it is flow control, not loss.
	MailboxBounded MailboxKind = "bounded"
)

// Mailbox is the mailbox of one actor kind.
type Mailbox struct {
	// Kind is the implementation; empty means the kind's default.
	Kind MailboxKind
	// Size is the capacity of a bounded mailbox; ignored otherwise. Zero
	// means 1024 for a bounded mailbox.
	Size int
}

// Mailboxes holds the mailbox of each actor kind.
type Mailboxes struct {
	Directory Mailbox
	Listener  Mailbox
	Pending   Mailbox
	Pair      Mailbox
}

// DefaultMailboxes returns the defaults, chosen from the mailbox sweep
// recorded in docs/TUNING.md: the directory sees every dial and callback, so
// it takes the lock-free queue; the other kinds see a handful of messages in
// their lives, where the plain unbounded queue allocates least. Each call
// returns a fresh copy: the defaults cannot be changed from outside.
func DefaultMailboxes() Mailboxes {
	return Mailboxes{
		Directory: Mailbox{Kind: MailboxUnboundedLockfree},
		Listener:  Mailbox{Kind: MailboxUnbounded},
		Pending:   Mailbox{Kind: MailboxUnbounded},
		Pair:      Mailbox{Kind: MailboxUnbounded},
	}
}

const maxBoundedMailbox = 1 << 20

// checkCycles refuses a bounded mailbox on more than one of the
// directory, listener and pending actors. Each pair of them sends both
// ways: the directory routes dials to a listener, which answers it for a
// refused dial's token; a listener hands callbacks to a pending dial,
// which tells the listener when it is done; the directory hands a
// cross-node dial's callback to its pending actor, which tells the
// directory when it is done. A sender that finds a bounded mailbox full
// spins until a slot frees, so with two of them bounded and full, each
// actor spins on the other and neither drains: the engine stops. With one
// bounded, the actor behind it always drains, since nothing it sends can
// spin.
func (m Mailboxes) checkCycles() error {
	var bounded []string
	for _, k := range []struct {
		kind string
		m    Mailbox
	}{{"directory", m.Directory}, {"listener", m.Listener}, {"pending", m.Pending}} {
		if k.m.Kind == MailboxBounded {
			bounded = append(bounded, k.kind)
		}
	}
	if len(bounded) > 1 {
		return fmt.Errorf("actors: mailboxes %s are all bounded: at most one of directory, listener and pending may be, since they send to each other and two full ones would wait on each other forever", strings.Join(bounded, " and "))
	}
	return nil
}

// inlineDispatcher runs an actor's messages on the goroutine of the
// sender that finds its mailbox idle (protoactor's synchronized
// dispatcher), up to 300 at a time like protoactor's default; the mailbox
// still runs one message at a time. A request then costs no goroutine
// start and no hand-off: a dial's handler runs the directory's step, the
// listener's and the pending actor's start itself, and finds its reply
// already there. It serves actors whose Receive never blocks.
var inlineDispatcher = actor.NewSynchronizedDispatcher(300)

// goroutineDispatcher is protoactor's default: a goroutine for each run
// of a mailbox that was idle.
var goroutineDispatcher = actor.NewDefaultDispatcher(300)

// dispatcher returns the dispatcher of the directory, listener and
// pending actors, and of the cluster's peer actor: inline while none of
// the three mailboxes is bounded (the default), else protoactor's
// goroutine dispatcher. These actors send to each other both ways (a
// listener answers the directory, a pending dial its listener). A sender
// that finds a bounded mailbox full spins until a slot frees, and inline
// the goroutine that would free it can be that very sender, further down
// its own stack: with any of them bounded, each mailbox runs on a
// goroutine of its own, as before.
func (m Mailboxes) dispatcher() actor.Dispatcher {
	if m.Directory.Kind == MailboxBounded || m.Listener.Kind == MailboxBounded || m.Pending.Kind == MailboxBounded {
		return goroutineDispatcher
	}
	return inlineDispatcher
}

// ParseMailbox parses the flag form of a mailbox: "unbounded",
// "unbounded-lockfree", "bounded" or "bounded:SIZE".
func ParseMailbox(s string) (Mailbox, error) {
	var m Mailbox
	kind, size, hasSize := cut(s, ':')
	m.Kind = MailboxKind(kind)
	if hasSize {
		if _, err := fmt.Sscanf(size, "%d", &m.Size); err != nil {
			return Mailbox{}, fmt.Errorf("actors: mailbox %q: bad size", s)
		}
	}
	return m, m.validate()
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// String returns the flag form of m.
func (m Mailbox) String() string {
	if m.Kind == MailboxBounded && m.Size > 0 {
		return fmt.Sprintf("%s:%d", m.Kind, m.Size)
	}
	return string(m.Kind)
}

func (m Mailbox) validate() error {
	switch m.Kind {
	case "", MailboxUnbounded, MailboxUnboundedLockfree:
		if m.Size != 0 {
			return fmt.Errorf("actors: mailbox %q takes no size", m.Kind)
		}
	case MailboxBounded:
		if m.Size < 0 || m.Size > maxBoundedMailbox {
			return fmt.Errorf("actors: bounded mailbox size %d out of range [0, %d] (0 means 1024)", m.Size, maxBoundedMailbox)
		}
	default:
		return fmt.Errorf("actors: unknown mailbox kind %q (want unbounded, unbounded-lockfree or bounded)", m.Kind)
	}
	return nil
}

func (m Mailbox) withDefault(d Mailbox) Mailbox {
	if m.Kind == "" {
		return d
	}
	if m.Kind == MailboxBounded && m.Size == 0 {
		m.Size = 1024
	}
	return m
}

func (m Mailbox) producer(mw ...actor.MailboxMiddleware) actor.MailboxProducer {
	switch m.Kind {
	case MailboxBounded:
		return actor.Bounded(m.Size, mw...)
	case MailboxUnboundedLockfree:
		return actor.UnboundedLockfree(mw...)
	default:
		return actor.Unbounded(mw...)
	}
}

// Limits are the engine's limits. The engine's Config and relaynode's
// Config both embed it, so each limit and its default are stated here
// once. A zero field takes its default (WithDefaults).
type Limits struct {
	// EventQueue is the number of SSE events a registration may have queued
	// and unwritten. A dial that finds it full is refused with 503.
	// Default 64.
	EventQueue int
	// CallbackTimeout is how long a dial waits for the server's callback
	// before it is answered 504. Default 10s.
	CallbackTimeout time.Duration
	// MaxPendingPerName bounds the dials waiting on one registration.
	// Default 1024.
	MaxPendingPerName int
	// MaxParked caps the callbacks one registration may keep parked in its
	// warm pool; parks beyond it get 429. Default 16; -1 turns the warm
	// pool off (every park gets 429).
	MaxParked int
	// Tombstones is the number of used tokens remembered so that replays
	// get 410 rather than 404 (after eviction a replay still gets 404, never
	// a connection). Default 4096: a 5-minute soak with 65536 showed the
	// cache's map creeping under churn, and 4096 flat (docs/OPERATIONS.md).
	Tombstones int
	// CopyBuffer is the size in bytes of the pooled copy buffer used when a
	// pair cannot splice. Default 32 KiB.
	CopyBuffer int
	// PairIdleTimeout cuts a pair when neither direction has moved a byte
	// for that long. Zero (the default) means never. With a limit set,
	// pairs copy in 1 MiB chunks (still splice(2)).
	PairIdleTimeout time.Duration
	// PairMaxDuration cuts a pair that long after it started. Zero (the
	// default) means never.
	PairMaxDuration time.Duration
	// PairMaxBytes cuts a pair once either direction has carried that many
	// bytes. Zero (the default) means no limit.
	PairMaxBytes int64
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.EventQueue == 0 {
		l.EventQueue = 64
	}
	if l.CallbackTimeout == 0 {
		l.CallbackTimeout = 10 * time.Second
	}
	if l.MaxPendingPerName == 0 {
		l.MaxPendingPerName = 1024
	}
	if l.MaxParked == 0 {
		l.MaxParked = 16
	}
	if l.Tombstones == 0 {
		l.Tombstones = 4096
	}
	if l.CopyBuffer == 0 {
		l.CopyBuffer = 32 << 10
	}
	return l
}

// Validate reports every nonsensical field of l, joined.
func (l Limits) Validate() error {
	var errs []error
	if l.EventQueue < 0 || l.EventQueue > 1<<16 {
		errs = append(errs, fmt.Errorf("actors: EventQueue %d out of range [1, 65536]", l.EventQueue))
	}
	if l.CallbackTimeout < 0 {
		errs = append(errs, fmt.Errorf("actors: CallbackTimeout %v is negative", l.CallbackTimeout))
	}
	if l.MaxPendingPerName < 0 {
		errs = append(errs, fmt.Errorf("actors: MaxPendingPerName %d is negative", l.MaxPendingPerName))
	}
	if l.MaxParked < -1 || l.MaxParked > 1024 {
		errs = append(errs, fmt.Errorf("actors: MaxParked %d out of range [-1, 1024]", l.MaxParked))
	}
	if l.PairIdleTimeout < 0 || l.PairMaxDuration < 0 || l.PairMaxBytes < 0 {
		errs = append(errs, errors.New("actors: pair limits must not be negative"))
	}
	if l.Tombstones < 0 {
		errs = append(errs, fmt.Errorf("actors: Tombstones %d is negative", l.Tombstones))
	}
	if l.CopyBuffer < 0 || (l.CopyBuffer > 0 && l.CopyBuffer < 512) || l.CopyBuffer > 4<<20 {
		errs = append(errs, fmt.Errorf("actors: CopyBuffer %d out of range [512, 4 MiB]", l.CopyBuffer))
	}
	return errors.Join(errs...)
}

// Config configures an Engine. The zero value is ready to use.
type Config struct {
	// Logger receives the engine's logs and the actor system's own, the
	// latter at warn and above. Nil discards.
	Logger *slog.Logger
	// NodeID names this relay in ready events. Empty means a random id.
	NodeID string
	// Mailboxes sets each actor kind's mailbox. Zero fields take
	// DefaultMailboxes().
	Mailboxes Mailboxes
	// Limits are the engine's limits; zero fields take their defaults.
	Limits
	// Cluster, when set, joins the engine to a cluster of nodes sharing
	// one name space (see ClusterConfig). Nil is one node, the default.
	Cluster *ClusterConfig
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NodeID == "" {
		c.NodeID = "relay-" + newID()[:8]
	}
	def := DefaultMailboxes()
	c.Mailboxes.Directory = c.Mailboxes.Directory.withDefault(def.Directory)
	c.Mailboxes.Listener = c.Mailboxes.Listener.withDefault(def.Listener)
	c.Mailboxes.Pending = c.Mailboxes.Pending.withDefault(def.Pending)
	c.Mailboxes.Pair = c.Mailboxes.Pair.withDefault(def.Pair)
	c.Limits = c.Limits.WithDefaults()
}

// Validate reports every nonsensical field of c, joined.
func (c *Config) Validate() error {
	var errs []error
	for _, k := range []struct {
		kind string
		m    Mailbox
	}{
		{"directory", c.Mailboxes.Directory}, {"listener", c.Mailboxes.Listener},
		{"pending", c.Mailboxes.Pending}, {"pair", c.Mailboxes.Pair},
	} {
		if err := k.m.validate(); err != nil {
			errs = append(errs, fmt.Errorf("mailbox.%s: %w", k.kind, err))
		}
	}
	if err := c.Mailboxes.checkCycles(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Cluster != nil {
		if err := c.Cluster.validate(); err != nil {
			errs = append(errs, err)
		}
		if c.NodeID == "" {
			errs = append(errs, errors.New("actors: a clustered engine needs a NodeID, the directory's node id"))
		}
	}
	return errors.Join(errs...)
}

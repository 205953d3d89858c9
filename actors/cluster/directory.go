// Package cluster holds the relay's cluster-wide name directory: which
// nodes hold a registration of which name. A node publishes its own
// registrations and reads everyone's from a local cache, so a dial's
// lookup costs no round trip.
//
// Two implementations share one contract (see Directory):
//   - Memory, for one node: the default;
//   - Etcd, for a cluster, on an etcd v3 store: each node holds one lease,
//     a name's members are keys under the lease of the node that holds
//     them, writes are transactions, and a watch feeds the cache.
//
// Only control data lives here. The bytes of a relayed connection never
// cross nodes: a dial landing on one node for a name held on another is
// matched and spliced on the node the client dialed.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Member is one registration of a name, on one node of the cluster.
type Member struct {
	// Node is the id of the node holding the registration.
	Node string `json:"node"`
	// Registration is the registration's id on that node.
	Registration string `json:"registration"`
	// ClusterAddr is the node's address for control messages between
	// nodes.
	ClusterAddr string `json:"cluster_addr"`
	// PublicURL is the URL the node advertises to servers and clients,
	// such as the callback URL of a cross-node dial.
	PublicURL string `json:"public_url"`
}

// Errors of Publish and Withdraw.
var (
	// ErrNameTaken refuses an unauthenticated registration of a name that
	// some node already holds, as one node answers 409.
	ErrNameTaken = errors.New("name taken")
	// ErrReplacedGone refuses a registration that names the registration
	// it replaces when that one is no longer in the directory.
	ErrReplacedGone = errors.New("replaced registration gone")
	// ErrClosed is returned once the directory is closed.
	ErrClosed = errors.New("directory closed")
)

// Publish is a request to add a member to a name.
type Publish struct {
	// Name is the name registered.
	Name string
	// Member is the new registration.
	Member Member
	// Authenticated registrations join a name's group; an unauthenticated
	// one needs the name free, or Replaces.
	Authenticated bool
	// Replaces, when set, is the registration id of a member of Name that
	// the new registration proved it succeeds (a reconnecting server). It
	// is removed in the same write.
	Replaces string
}

// Directory is the contract of both implementations.
//
// Publish adds a member; it fails with ErrNameTaken when the name is held
// and the request is neither authenticated nor a replacement. Withdraw
// removes a member; removing one that is not there is no error. Pick
// returns the next member of a name, round robin over all its members on
// every node, from the local cache; ok is false for an unknown name.
// Evicted delivers, once each, the members of this node that another
// node removed (a takeover by Replaces); the node must end them.
// Sync waits until the local cache reflects every write the cluster had
// made when it was called: a node that misses a name in its cache syncs
// before it answers 404, so a name registered on another node a moment
// ago is found.
// Healthy reports whether the directory is in step with the cluster (for
// Etcd: this node holds a live lease); Snapshot returns every name's
// members from the local cache, and Stats the directory's counters.
type Directory interface {
	Publish(ctx context.Context, p Publish) error
	Withdraw(ctx context.Context, name string, m Member) error
	Pick(name string) (m Member, ok bool)
	Members(name string) []Member
	Evicted() <-chan Member
	Healthy() bool
	Snapshot() map[string][]Member
	Stats() Stats
	Nodes(ctx context.Context) ([]NodeInfo, error)
	Sync(ctx context.Context) error
	Close() error
}

// Stats are a directory's counters, for the node's /metrics and /status.
type Stats struct {
	// Healthy is Healthy() at the time of the snapshot.
	Healthy bool
	// LeaseAge is how long this node has held its current lease; zero
	// without one (and always for Memory).
	LeaseAge time.Duration
	// Renewals counts the lease's keep-alive answers; Losses the leases
	// lost and taken again.
	Renewals int64
	Losses   int64
	// Nodes are the live nodes of the cluster, as they announced
	// themselves, by node id. Memory has none.
	Nodes map[string]NodeInfo
}

// NodeInfo is one node as it announces itself in the directory, under its
// lease.
type NodeInfo struct {
	Node        string    `json:"node"`
	ClusterAddr string    `json:"cluster_addr"`
	PublicURL   string    `json:"public_url"`
	LeaseSince  time.Time `json:"lease_since"`
}

// cache is the local view of the directory: each name's members in a
// stable order, and a round-robin cursor per name. Both implementations
// read from it.
type cache struct {
	mu    sync.Mutex
	names map[string]*entry
}

type entry struct {
	members []Member
	next    int
}

func newCache() *cache { return &cache{names: make(map[string]*entry)} }

// key of a member within its name.
func memberKey(m Member) string { return m.Node + "/" + m.Registration }

func (c *cache) put(name string, m Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.names[name]
	if e == nil {
		e = &entry{}
		c.names[name] = e
	}
	k := memberKey(m)
	i, found := slices.BinarySearchFunc(e.members, k, func(a Member, k string) int {
		return cmpString(memberKey(a), k)
	})
	if found {
		e.members[i] = m
		return
	}
	e.members = slices.Insert(e.members, i, m)
}

func (c *cache) remove(name, node, reg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.names[name]
	if e == nil {
		return
	}
	k := node + "/" + reg
	e.members = slices.DeleteFunc(e.members, func(m Member) bool { return memberKey(m) == k })
	if len(e.members) == 0 {
		delete(c.names, name)
	}
}

// find returns the member of name whose registration id is reg, on any
// node.
func (c *cache) find(name, reg string) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.names[name]; e != nil {
		for _, m := range e.members {
			if m.Registration == reg {
				return m, true
			}
		}
	}
	return Member{}, false
}

func (c *cache) held(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[name] != nil
}

func (c *cache) pick(name string) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.names[name]
	if e == nil {
		return Member{}, false
	}
	m := e.members[e.next%len(e.members)]
	e.next++
	return m, true
}

func (c *cache) members(name string) []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.names[name]; e != nil {
		return slices.Clone(e.members)
	}
	return nil
}

func (c *cache) snapshot() map[string][]Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]Member, len(c.names))
	for name, e := range c.names {
		out[name] = slices.Clone(e.members)
	}
	return out
}

func (c *cache) reset() {
	c.mu.Lock()
	c.names = make(map[string]*entry)
	c.mu.Unlock()
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Memory is the directory of one node: the cache alone.
type Memory struct {
	c       *cache
	mu      sync.Mutex // serializes writes, as etcd's transactions do
	closed  bool
	evicted chan Member
}

// NewMemory returns an empty one-node directory.
func NewMemory() *Memory {
	return &Memory{c: newCache(), evicted: make(chan Member)}
}

// Publish implements Directory.
func (d *Memory) Publish(_ context.Context, p Publish) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("cluster: publish %q: %w", p.Name, ErrClosed)
	}
	if err := checkPublish(p); err != nil {
		return err
	}
	switch {
	case p.Replaces != "":
		old, ok := d.c.find(p.Name, p.Replaces)
		if !ok {
			return fmt.Errorf("cluster: publish %q: %w", p.Name, ErrReplacedGone)
		}
		d.c.remove(p.Name, old.Node, old.Registration)
	case !p.Authenticated && d.c.held(p.Name):
		return fmt.Errorf("cluster: publish %q: %w", p.Name, ErrNameTaken)
	}
	d.c.put(p.Name, p.Member)
	return nil
}

// Withdraw implements Directory.
func (d *Memory) Withdraw(_ context.Context, name string, m Member) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("cluster: withdraw %q: %w", name, ErrClosed)
	}
	d.c.remove(name, m.Node, m.Registration)
	return nil
}

// Pick implements Directory.
func (d *Memory) Pick(name string) (Member, bool) { return d.c.pick(name) }

// Members implements Directory.
func (d *Memory) Members(name string) []Member { return d.c.members(name) }

// Evicted implements Directory. One node has no other node to take its
// registrations over, so nothing is ever sent.
func (d *Memory) Evicted() <-chan Member { return d.evicted }

// Healthy implements Directory: one node is always in step with itself.
func (d *Memory) Healthy() bool { return true }

// Snapshot implements Directory.
func (d *Memory) Snapshot() map[string][]Member { return d.c.snapshot() }

// Stats implements Directory: Memory has no lease and no other node.
func (d *Memory) Stats() Stats { return Stats{Healthy: true} }

// Sync implements Directory: Memory's cache is the directory.
func (d *Memory) Sync(context.Context) error { return nil }

// Nodes implements Directory: Memory knows no node, not even its own.
func (d *Memory) Nodes(context.Context) ([]NodeInfo, error) { return nil, nil }

// Close implements Directory.
func (d *Memory) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return nil
}

// checkPublish refuses a request whose parts could not be stored as one
// key: the name and the ids are path segments.
func checkPublish(p Publish) error {
	for _, f := range []struct{ what, v string }{
		{"name", p.Name}, {"node", p.Member.Node}, {"registration", p.Member.Registration},
	} {
		if !segment(f.v) {
			return fmt.Errorf("cluster: publish %q: invalid %s %q", p.Name, f.what, f.v)
		}
	}
	if p.Replaces != "" && !segment(p.Replaces) {
		return fmt.Errorf("cluster: publish %q: invalid replaced registration %q", p.Name, p.Replaces)
	}
	return nil
}

// segment reports whether s is non-empty, at most 128 bytes and free of
// '/' and control bytes.
func segment(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] < 0x21 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig configures an Etcd directory.
type EtcdConfig struct {
	// Endpoints are the etcd client URLs, such as "http://127.0.0.1:2379".
	Endpoints []string
	// Node is this node's id; every member it publishes carries it.
	Node string
	// Prefix is the key prefix of the directory. Default "/clusterlink-relay/".
	Prefix string
	// TTL is the lease's time to live: how long a crashed node's names
	// outlive it. Default 5s; etcd's floor is 1s.
	TTL time.Duration
	// DialTimeout bounds the first connection to etcd and each write.
	// Default 5s.
	DialTimeout time.Duration
	// Logger receives lease losses and watch restarts. Default slog.Default().
	Logger *slog.Logger
	// TLS, when set, is the client TLS configuration for etcd (a CA to
	// verify it, and a client certificate when etcd asks for one).
	TLS *tls.Config
	// Username and Password, when Username is set, authenticate to etcd.
	Username string
	Password string
	// ClusterAddr and PublicURL are announced in this node's record
	// (NodeInfo), under its lease, for the other nodes' status pages.
	ClusterAddr string
	PublicURL   string
}

func (c *EtcdConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "/clusterlink-relay/"
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.TTL <= 0 {
		c.TTL = 5 * time.Second
	}
	if c.TTL < time.Second {
		c.TTL = time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Etcd is the directory of a cluster, on etcd.
//
// Keys are PREFIX/n/NAME/NODE/REGISTRATION, each holding the member as
// JSON under the lease of the node that published it. A crashed node's
// keys vanish when its lease expires; a node that lost its lease and got
// a new one publishes its live members again. A node's clean Close
// revokes its lease, so its names vanish at once.
type Etcd struct {
	cfg     EtcdConfig
	cli     *clientv3.Client
	c       *cache
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	evicted chan Member

	mu        sync.Mutex
	rev       int64         // the revision the cache reflects
	revCh     chan struct{} // closed and replaced when rev advances
	lease     clientv3.LeaseID
	published map[string]Publish // member key path → what was published
	closed    bool
	since     time.Time // when the current lease was granted

	syncMu   sync.Mutex
	syncNext *syncRound // the read the next Sync callers wait for
	syncing  bool       // syncRounds is running

	held      atomic.Bool  // the current lease is known to be alive
	lastRenew atomic.Int64 // unix nanoseconds of the last keep-alive answer (or grant)
	renewals  atomic.Int64
	losses    atomic.Int64
}

// NewEtcd connects to etcd, takes this node's lease, loads the directory
// into the cache and starts the keep-alive and the watch. It fails if etcd
// does not answer within cfg.DialTimeout.
func NewEtcd(cfg EtcdConfig) (*Etcd, error) {
	cfg.setDefaults()
	if !segment(cfg.Node) {
		return nil, fmt.Errorf("cluster: etcd directory: invalid node id %q", cfg.Node)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("cluster: etcd directory: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Etcd{
		cfg: cfg, cli: cli, c: newCache(), ctx: ctx, cancel: cancel,
		evicted:   make(chan Member, 64),
		published: make(map[string]Publish),
		revCh:     make(chan struct{}),
	}
	fail := func(op string, err error) (*Etcd, error) {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("cluster: etcd %v: %s: %w", cfg.Endpoints, op, err)
	}
	if d.lease, err = d.grant(); err != nil {
		return fail("grant lease", err)
	}
	d.granted()
	if err := d.announce(d.lease); err != nil {
		return fail("announce node", err)
	}
	rev, err := d.load()
	if err != nil {
		return fail("load directory", err)
	}
	d.wg.Add(2)
	go d.keepAlive()
	go d.watch(rev)
	return d, nil
}

func (d *Etcd) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, d.cfg.DialTimeout)
}

func (d *Etcd) grant() (clientv3.LeaseID, error) {
	ctx, cancel := d.opCtx()
	defer cancel()
	resp, err := d.cli.Grant(ctx, int64(d.cfg.TTL/time.Second))
	if err != nil {
		return 0, err
	}
	return resp.ID, nil
}

// granted records a new live lease.
func (d *Etcd) granted() {
	d.mu.Lock()
	d.since = time.Now()
	d.mu.Unlock()
	d.lastRenew.Store(time.Now().UnixNano())
	d.held.Store(true)
}

// announce writes this node's record under lease.
func (d *Etcd) announce(lease clientv3.LeaseID) error {
	d.mu.Lock()
	info := NodeInfo{Node: d.cfg.Node, ClusterAddr: d.cfg.ClusterAddr, PublicURL: d.cfg.PublicURL, LeaseSince: d.since}
	d.mu.Unlock()
	val, err := json.Marshal(info)
	if err != nil {
		return err
	}
	ctx, cancel := d.opCtx()
	defer cancel()
	_, err = d.cli.Put(ctx, d.nodesPrefix()+d.cfg.Node, string(val), clientv3.WithLease(lease))
	return err
}

// SetClusterAddr sets the cluster address announced in this node's record
// and writes the record again: the address may be known only once the
// cluster port is bound, after NewEtcd.
func (d *Etcd) SetClusterAddr(addr string) error {
	d.mu.Lock()
	d.cfg.ClusterAddr = addr
	lease := d.lease
	d.mu.Unlock()
	if err := d.announce(lease); err != nil {
		return fmt.Errorf("cluster: announce node: %w", err)
	}
	return nil
}

// Healthy implements Directory: the node holds a lease that etcd renewed
// within the last two thirds of its TTL (the keep-alive renews it every
// third), so a node cut off from etcd turns unhealthy before its lease
// can have expired.
func (d *Etcd) Healthy() bool {
	if d == nil || !d.held.Load() {
		return false
	}
	return time.Since(time.Unix(0, d.lastRenew.Load())) < d.cfg.TTL*2/3+100*time.Millisecond
}

// Snapshot implements Directory.
func (d *Etcd) Snapshot() map[string][]Member { return d.c.snapshot() }

// Stats implements Directory.
func (d *Etcd) Stats() Stats {
	st := Stats{Healthy: d.Healthy(), Renewals: d.renewals.Load(), Losses: d.losses.Load()}
	if d.held.Load() {
		d.mu.Lock()
		st.LeaseAge = time.Since(d.since)
		d.mu.Unlock()
	}
	return st
}

// Sync implements Directory: one linearizable etcd read of the newest
// member key's revision, then a wait for the watch to deliver up to it.
// (The store's own revision will not do: writes outside the names, such
// as node records, advance it without an event on the watch.)
//
// Concurrent calls share reads: a call joins the next read to start after
// it, so a flood of dials for unknown names costs etcd at most one read
// at a time, never one per dial.
func (d *Etcd) Sync(ctx context.Context) error {
	d.syncMu.Lock()
	if d.syncNext == nil {
		d.syncNext = &syncRound{done: make(chan struct{})}
	}
	round := d.syncNext
	if !d.syncing {
		d.mu.Lock()
		closed := d.closed
		if !closed {
			d.wg.Add(1) // before Close's Wait: Close sets closed under mu first
		}
		d.mu.Unlock()
		if closed {
			d.syncMu.Unlock()
			return fmt.Errorf("cluster: sync: %w", ErrClosed)
		}
		d.syncing = true
		go d.syncRounds()
	}
	d.syncMu.Unlock()
	select {
	case <-round.done:
		return round.err
	case <-ctx.Done():
		return fmt.Errorf("cluster: sync: %w", ctx.Err())
	}
}

// syncRound is one shared read of Sync.
type syncRound struct {
	done chan struct{}
	err  error
}

// syncRounds runs the reads Sync's callers wait on, one at a time, until
// none is asked for.
func (d *Etcd) syncRounds() {
	defer d.wg.Done()
	for {
		d.syncMu.Lock()
		round := d.syncNext
		d.syncNext = nil
		if round == nil {
			d.syncing = false
			d.syncMu.Unlock()
			return
		}
		d.syncMu.Unlock()
		round.err = d.syncOnce(d.ctx)
		close(round.done)
	}
}

func (d *Etcd) syncOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	resp, err := d.cli.Get(ctx, d.namesPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return fmt.Errorf("cluster: sync: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	if err := d.caughtUp(ctx, resp.Kvs[0].ModRevision); err != nil {
		return fmt.Errorf("cluster: sync: %w", err)
	}
	return nil
}

// Nodes implements Directory: the records of the nodes holding a lease,
// read from etcd (one round trip, bounded by DialTimeout), by node id.
func (d *Etcd) Nodes(ctx context.Context) ([]NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	resp, err := d.cli.Get(ctx, d.nodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: read node records: %w", err)
	}
	out := make([]NodeInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n NodeInfo
		if json.Unmarshal(kv.Value, &n) == nil && n.Node != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

func (d *Etcd) nodesPrefix() string           { return d.cfg.Prefix + "m/" }
func (d *Etcd) namesPrefix() string           { return d.cfg.Prefix + "n/" }
func (d *Etcd) namePrefix(name string) string { return d.namesPrefix() + name + "/" }
func (d *Etcd) key(name string, m Member) string {
	return d.namePrefix(name) + m.Node + "/" + m.Registration
}

// parseKey splits a member key into name, node and registration.
func (d *Etcd) parseKey(k string) (name, node, reg string, ok bool) {
	rest, ok := strings.CutPrefix(k, d.namesPrefix())
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// load fills the cache from etcd and returns the revision it read at.
func (d *Etcd) load() (int64, error) {
	ctx, cancel := d.opCtx()
	defer cancel()
	resp, err := d.cli.Get(ctx, d.namesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	d.c.reset()
	for _, kv := range resp.Kvs {
		d.apply(string(kv.Key), kv.Value)
	}
	d.advance(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// advance records that the cache reflects revision rev.
func (d *Etcd) advance(rev int64) {
	d.mu.Lock()
	if rev > d.rev {
		d.rev = rev
		close(d.revCh)
		d.revCh = make(chan struct{})
	}
	d.mu.Unlock()
}

// caughtUp waits until the cache reflects revision rev: a node reads its
// own writes. The cache changes only through the watch, in etcd's order,
// so a late event can never undo a newer write.
func (d *Etcd) caughtUp(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	for {
		d.mu.Lock()
		cur, ch := d.rev, d.revCh
		d.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for the directory watch to reach revision %d (at %d): %w", rev, cur, ctx.Err())
		}
	}
}

// apply puts one stored member into the cache; a malformed one is
// logged and skipped, so one bad key cannot hide the others.
func (d *Etcd) apply(k string, v []byte) {
	name, node, reg, ok := d.parseKey(k)
	var m Member
	if ok {
		ok = json.Unmarshal(v, &m) == nil && m.Node == node && m.Registration == reg
	}
	if !ok {
		d.cfg.Logger.Warn("cluster: skipped a malformed directory key", slog.String("key", k))
		return
	}
	d.c.put(name, m)
}

// Publish implements Directory, in one etcd transaction.
func (d *Etcd) Publish(ctx context.Context, p Publish) error {
	if err := checkPublish(p); err != nil {
		return err
	}
	if p.Member.Node != d.cfg.Node {
		return fmt.Errorf("cluster: publish %q: member of node %q on node %q", p.Name, p.Member.Node, d.cfg.Node)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("cluster: publish %q: %w", p.Name, ErrClosed)
	}
	lease := d.lease
	d.mu.Unlock()
	key := d.key(p.Name, p.Member)
	// Recorded first: the watch must not read the new key's events as
	// someone else's.
	d.mu.Lock()
	d.published[key] = Publish{Name: p.Name, Member: p.Member, Authenticated: p.Authenticated}
	d.mu.Unlock()
	rev, err := d.put(ctx, p, key, lease)
	if err != nil {
		d.mu.Lock()
		delete(d.published, key)
		d.mu.Unlock()
		return err
	}
	if err := d.caughtUp(ctx, rev); err != nil {
		return fmt.Errorf("cluster: publish %q: %w", p.Name, err)
	}
	return nil
}

// put writes p's key under lease, with the checks of Publish, and
// returns the write's revision.
func (d *Etcd) put(ctx context.Context, p Publish, key string, lease clientv3.LeaseID) (int64, error) {
	val, err := json.Marshal(p.Member)
	if err != nil {
		return 0, fmt.Errorf("cluster: publish %q: %w", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	put := clientv3.OpPut(key, string(val), clientv3.WithLease(lease))
	var txn clientv3.Txn
	switch {
	case p.Replaces != "":
		old, err := d.findKey(ctx, p.Name, p.Replaces)
		if err != nil {
			return 0, fmt.Errorf("cluster: publish %q: find replaced registration: %w", p.Name, err)
		}
		if old == "" {
			return 0, fmt.Errorf("cluster: publish %q: %w", p.Name, ErrReplacedGone)
		}
		txn = d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(old), ">", 0)).
			Then(clientv3.OpDelete(old), put)
	case p.Authenticated:
		txn = d.cli.Txn(ctx).Then(put)
	default:
		// Free means no key under the name at all: a range compare holds
		// for an empty range.
		txn = d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(d.namePrefix(p.Name)).WithPrefix(), "=", 0)).
			Then(put)
	}
	resp, err := txn.Commit()
	if err != nil {
		return 0, fmt.Errorf("cluster: publish %q: %w", p.Name, err)
	}
	if !resp.Succeeded {
		if p.Replaces != "" {
			return 0, fmt.Errorf("cluster: publish %q: %w", p.Name, ErrReplacedGone)
		}
		return 0, fmt.Errorf("cluster: publish %q: %w", p.Name, ErrNameTaken)
	}
	return resp.Header.Revision, nil
}

// findKey returns the key of name's member whose registration is reg, or
// "" when there is none.
func (d *Etcd) findKey(ctx context.Context, name, reg string) (string, error) {
	resp, err := d.cli.Get(ctx, d.namePrefix(name), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return "", err
	}
	for _, kv := range resp.Kvs {
		if _, _, r, ok := d.parseKey(string(kv.Key)); ok && r == reg {
			return string(kv.Key), nil
		}
	}
	return "", nil
}

// Withdraw implements Directory.
func (d *Etcd) Withdraw(ctx context.Context, name string, m Member) error {
	key := d.key(name, m)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("cluster: withdraw %q: %w", name, ErrClosed)
	}
	delete(d.published, key)
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DialTimeout)
	defer cancel()
	resp, err := d.cli.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("cluster: withdraw %q: %w", name, err)
	}
	if resp.Deleted > 0 { // else nothing under the prefix changed, and no event will come
		if err := d.caughtUp(ctx, resp.Header.Revision); err != nil {
			return fmt.Errorf("cluster: withdraw %q: %w", name, err)
		}
	}
	return nil
}

// Pick implements Directory.
func (d *Etcd) Pick(name string) (Member, bool) { return d.c.pick(name) }

// Members implements Directory.
func (d *Etcd) Members(name string) []Member { return d.c.members(name) }

// Evicted implements Directory.
func (d *Etcd) Evicted() <-chan Member { return d.evicted }

// Close revokes the lease, so this node's names vanish at once, and stops
// the keep-alive and the watch.
func (d *Etcd) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	lease := d.lease
	d.mu.Unlock()
	d.held.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DialTimeout)
	_, rerr := d.cli.Revoke(ctx, lease)
	cancel()
	d.cancel()
	d.wg.Wait()
	cerr := d.cli.Close()
	if rerr != nil {
		return fmt.Errorf("cluster: close: revoke lease: %w", rerr)
	}
	return cerr
}

// abandon stops the directory as a crash would: the lease is left to
// expire. For tests.
func (d *Etcd) abandon() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	d.cli.Close()
}

// keepAlive keeps the lease alive. When the lease is lost (expired while
// etcd was out of reach, or revoked), it takes a new one and publishes
// this node's live members again.
func (d *Etcd) keepAlive() {
	defer d.wg.Done()
	backoff := 100 * time.Millisecond
	for d.ctx.Err() == nil {
		d.mu.Lock()
		lease := d.lease
		d.mu.Unlock()
		ch, err := d.cli.KeepAlive(d.ctx, lease)
		if err == nil {
			for range ch {
				backoff = 100 * time.Millisecond
				d.lastRenew.Store(time.Now().UnixNano())
				d.renewals.Add(1)
			}
		}
		if d.ctx.Err() != nil {
			return
		}
		// Is the lease gone, or did only the stream break?
		ctx, cancel := d.opCtx()
		ttl, err := d.cli.TimeToLive(ctx, lease)
		cancel()
		if err == nil && ttl.TTL > 0 {
			continue
		}
		if d.held.Swap(false) {
			d.losses.Add(1)
		}
		if err := d.regrant(); err != nil {
			d.cfg.Logger.Warn("cluster: lease lost; retrying", slog.Any("err", err))
			select {
			case <-time.After(backoff):
			case <-d.ctx.Done():
				return
			}
			backoff = min(2*backoff, d.cfg.TTL)
		}
	}
}

// regrant takes a new lease and publishes the live members under it.
// republish puts a live member again under lease. Its own key may still
// be there, under the old lease: etcd restores leases with their full TTL
// when it restarts, so a node that gave its lease up while etcd was away
// can find its keys alive. That key is no rival: it moves to the new
// lease in one transaction. Otherwise the member is published as new
// (and may find its name taken meanwhile: ErrNameTaken).
func (d *Etcd) republish(p Publish, key string, lease clientv3.LeaseID) error {
	val, err := json.Marshal(p.Member)
	if err != nil {
		return fmt.Errorf("cluster: publish %q: %w", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.DialTimeout)
	resp, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), ">", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: publish %q again: %w", p.Name, err)
	}
	if resp.Succeeded {
		return nil
	}
	_, err = d.put(d.ctx, p, key, lease)
	return err
}

func (d *Etcd) regrant() error {
	lease, err := d.grant()
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	d.mu.Lock()
	d.lease = lease
	d.since = time.Now()
	pubs := make(map[string]Publish, len(d.published))
	for k, p := range d.published {
		pubs[k] = p
	}
	d.mu.Unlock()
	d.cfg.Logger.Warn("cluster: lease lost and regained; publishing again", slog.Int("members", len(pubs)))
	if err := d.announce(lease); err != nil {
		return fmt.Errorf("announce node: %w", err)
	}
	for key, p := range pubs {
		err := d.republish(p, key, lease)
		if errors.Is(err, ErrNameTaken) {
			// Another node took the name while this one was away.
			d.evict(key, p.Member)
			continue
		}
		if err != nil {
			return err
		}
	}
	d.lastRenew.Store(time.Now().UnixNano())
	d.held.Store(true)
	return nil
}

// evict forgets a member of this node and tells the node.
func (d *Etcd) evict(key string, m Member) {
	d.mu.Lock()
	_, live := d.published[key]
	delete(d.published, key)
	d.mu.Unlock()
	if !live {
		return
	}
	select {
	case d.evicted <- m:
	case <-d.ctx.Done():
	}
}

// watch keeps the cache in step with etcd from revision rev on. When the
// watch breaks (etcd restarted, or the revision was compacted) it loads
// the directory again.
func (d *Etcd) watch(rev int64) {
	defer d.wg.Done()
	for d.ctx.Err() == nil {
		wch := d.cli.Watch(clientv3.WithRequireLeader(d.ctx), d.namesPrefix(),
			clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				d.cfg.Logger.Warn("cluster: directory watch broke; reloading", slog.Any("err", err))
				break
			}
			for _, ev := range resp.Events {
				d.event(ev)
			}
			rev = resp.Header.Revision
			d.advance(rev)
		}
		if d.ctx.Err() != nil {
			return
		}
		var err error
		for d.ctx.Err() == nil {
			if rev, err = d.load(); err == nil {
				break
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-d.ctx.Done():
				return
			}
		}
	}
}

func (d *Etcd) event(ev *clientv3.Event) {
	k := string(ev.Kv.Key)
	if ev.Type == clientv3.EventTypePut {
		d.apply(k, ev.Kv.Value)
		return
	}
	name, node, reg, ok := d.parseKey(k)
	if !ok {
		return
	}
	d.c.remove(name, node, reg)
	if node != d.cfg.Node {
		return
	}
	d.mu.Lock()
	p, live := d.published[k]
	lease := d.lease
	d.mu.Unlock()
	if !live || ev.PrevKv == nil || clientv3.LeaseID(ev.PrevKv.Lease) != lease {
		// Withdrawn by this node, or gone with an old lease: the
		// keep-alive publishes live members again under the new one,
		// and the watch will show them then.
		return
	}
	// Deleted under the live lease by someone else: a takeover.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := d.opCtx()
		ttl, err := d.cli.TimeToLive(ctx, lease)
		cancel()
		if err == nil && ttl.TTL > 0 {
			d.evict(k, p.Member)
		}
	}()
}

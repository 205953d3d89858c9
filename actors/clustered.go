package actors

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/clusterlink-relay/relay/actors/cluster"
	"github.com/clusterlink-relay/relay/actors/cluster/clusterpb"
	"github.com/clusterlink-relay/relay/wire"
)

// PeerActorName is the name of the well-known actor every clustered node
// runs: other nodes send it their Notify messages.
const PeerActorName = "relay-peer"

// ClusterConfig joins an engine to a cluster of relay nodes that share one
// name space. Registrations are published to Directory; a dial for a name
// held on another node is announced to that node's peer actor with a
// clusterpb.Notify, and its callback comes back to this node, which
// splices it. Only control messages cross nodes.
type ClusterConfig struct {
	// Directory is the cluster-wide directory; its node id must be the
	// engine's NodeID. The engine does not close it.
	Directory cluster.Directory
	// Open, when set instead of Directory, opens the directory once the
	// cluster port is bound, with the address published for this node.
	// Protoactor's remote sets gRPC's global logger as it starts, which
	// races with the goroutines of a gRPC client already running (the
	// etcd client's): a directory on etcd is opened here, after. The
	// engine does not close what it returns.
	Open func(clusterAddr string) (cluster.Directory, error)
	// PublicURL is this node's advertised URL, such as
	// "https://relay-1.example:8443": the callbacks of dials made on this
	// node for names held on others are sent to PublicURL + /accept/TOKEN.
	PublicURL string
	// Listen is the host:port protoactor's remote serves the cluster port
	// on; port 0 picks a free one (ClusterAddr reports it). Empty starts no
	// remote: peers are then reachable only at this process's own address,
	// which only tests use.
	Listen string
	// Advertise is the cluster address published for this node, when it
	// differs from the bound one (Listen on 0.0.0.0, or behind NAT).
	// Empty means the bound address.
	Advertise string
	// ServerTLS, when set, makes the cluster port speak TLS with it: set
	// ClientCAs and ClientAuth for mutual TLS. Nil is plaintext.
	ServerTLS *tls.Config
	// ClientTLS, when set, is used to dial peers' cluster ports. Nil is
	// plaintext.
	ClientTLS *tls.Config
	// NotifyTimeout bounds a Notify's round trip to the holding node; a
	// dial whose Notify gets no answer in time is refused 503. Default 2s.
	NotifyTimeout time.Duration
}

func (c *ClusterConfig) validate() error {
	var errs []error
	if (c.Directory == nil) == (c.Open == nil) {
		errs = append(errs, errors.New("actors: set one of Cluster.Directory and Cluster.Open"))
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("actors: Cluster.PublicURL %q is not an absolute http(s) URL", c.PublicURL))
	}
	if c.Listen != "" {
		if _, p, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("actors: Cluster.Listen %q: %w", c.Listen, err))
		} else if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			errs = append(errs, fmt.Errorf("actors: Cluster.Listen %q: bad port", c.Listen))
		}
	}
	if c.NotifyTimeout < 0 {
		errs = append(errs, fmt.Errorf("actors: Cluster.NotifyTimeout %v is negative", c.NotifyTimeout))
	}
	return errors.Join(errs...)
}

// syncBound bounds the directory sync of a dial whose name is not in the
// local cache.
const syncBound = 500 * time.Millisecond

// Refusals of the clustered paths.
var (
	refuseDirectoryDown = &Refusal{http.StatusServiceUnavailable, "cluster directory unavailable"}
	refusePeerDown      = &Refusal{http.StatusServiceUnavailable, "cluster peer unreachable"}

	// errPeerConnectionLost fails a Notify at once to an address whose
	// connection remote reported lost (see downFor).
	errPeerConnectionLost = errors.New("actors: cluster peer connection lost")
	refuseBadNotify       = &Refusal{http.StatusBadGateway, "malformed cluster notify"}
)

// clusterState is a clustered engine's part; nil on one node.
type clusterState struct {
	cfg    ClusterConfig
	dir    cluster.Directory
	remote *remote.Remote // nil when Listen is empty
	addr   string         // this node's cluster address, as published
	public string         // PublicURL without a trailing slash

	suspects sync.Map // node id → time.Time: a Notify to it failed, avoid it until then
	down     sync.Map // cluster address → *downState: remote lost its connection there
	linked   sync.Map // cluster address → struct{}: remote holds a connection there
	sub      *eventstream.Subscription
	root     *actor.RootContext

	// awaiting holds, by cluster address, the pending dials whose Notify
	// there is unanswered: a lost connection fails them over at once.
	awaitMu  sync.Mutex
	awaiting map[string]map[*actor.PID]struct{}

	closing  atomic.Bool
	stopped  sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup // the eviction loop and withdrawals in flight
	counters clusterCounters
}

type clusterCounters struct {
	crossDials    atomic.Int64 // dials announced to another node
	unavailable   atomic.Int64 // cross-node dials refused: directory unhealthy
	notifyRefused atomic.Int64 // Notifies refused here: registration not held, or malformed
	notified      atomic.Int64 // Notifies served here: connect event queued
	notifyWaited  atomic.Int64 // Notifies that waited for their registration's publish to end
	evicted       atomic.Int64 // local registrations ended by another node's takeover

	ops    [numDirOps]dirOpStats
	notify histogram // a Notify's round trip, sent to answered

	mu    sync.Mutex
	peers map[string]*PeerStats // by peer node id
}

type dirOpStats struct {
	latency histogram
	errors  atomic.Int64
}

// The directory operations counted.
const (
	dirPublish = iota
	dirWithdraw
	numDirOps
)

var dirOpNames = [numDirOps]string{"publish", "withdraw"}

// PeerStats counts the Notify messages sent to one peer node.
type PeerStats struct {
	Sent   int64
	Failed int64 // no answer in NotifyTimeout, or not deliverable
}

// peer counts a Notify sent to node, or, with failed, its failure.
func (c *clusterCounters) peer(node string, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers == nil {
		c.peers = make(map[string]*PeerStats)
	}
	p := c.peers[node]
	if p == nil {
		p = &PeerStats{}
		c.peers[node] = p
	}
	if failed {
		p.Failed++
	} else {
		p.Sent++
	}
}

// DirectoryOpStats are one directory operation's figures.
type DirectoryOpStats struct {
	Op      string
	Latency Histogram
	Errors  int64
}

// ClusterStats is a snapshot of a clustered engine's counters.
type ClusterStats struct {
	// Node and Addr are this node's id and cluster address; PublicURL its
	// advertised URL.
	Node      string
	Addr      string
	PublicURL string
	// CrossDials counts dials announced to another node; Unavailable the
	// cross-node dials refused 503 because the directory was unhealthy.
	CrossDials  int64
	Unavailable int64
	// Notified counts other nodes' Notifies served here; NotifyRefused
	// those refused (registration not held here, or malformed).
	Notified      int64
	NotifyRefused int64
	// NotifyWaited counts Notifies that arrived for a registration this
	// node was still publishing (the other node saw it first) and waited
	// for it here instead of being refused.
	NotifyWaited int64
	// Evicted counts local registrations ended because another node took
	// their name over.
	Evicted int64
	// Linked is how many other nodes remote holds a connection to (kept
	// open to every node of the directory, so that a peer's death is
	// known as it happens).
	Linked int
	// Ops are the directory's write operations: latency and errors.
	Ops []DirectoryOpStats
	// Peers counts Notifies sent, by peer node id.
	Peers map[string]PeerStats
	// NotifyLatency is a Notify's round trip, from its send to the
	// holder's answer, over LatencyBuckets (answered ones only).
	NotifyLatency Histogram
	// Directory is the directory's own figures (lease, renewals).
	Directory cluster.Stats
}

// Clustered reports whether the engine is part of a cluster.
func (e *Engine) Clustered() bool { return e.cl != nil }

// ClusterDirectory returns the cluster directory, or nil on one node.
func (e *Engine) ClusterDirectory() cluster.Directory {
	if e.cl == nil {
		return nil
	}
	return e.cl.dir
}

// ClusterStats returns a snapshot of the cluster counters; ok is false on
// one node.
func (e *Engine) ClusterStats() (st ClusterStats, ok bool) {
	c := e.cl
	if c == nil {
		return ClusterStats{}, false
	}
	st = ClusterStats{
		Node: e.cfg.NodeID, Addr: c.addr, PublicURL: c.public,
		CrossDials:    c.counters.crossDials.Load(),
		Linked:        c.linkedCount(),
		Unavailable:   c.counters.unavailable.Load(),
		Notified:      c.counters.notified.Load(),
		NotifyRefused: c.counters.notifyRefused.Load(),
		NotifyWaited:  c.counters.notifyWaited.Load(),
		Evicted:       c.counters.evicted.Load(),
		Directory:     c.dir.Stats(),
		Peers:         map[string]PeerStats{},
		NotifyLatency: c.counters.notify.snapshot(),
	}
	for i := range c.counters.ops {
		st.Ops = append(st.Ops, DirectoryOpStats{Op: dirOpNames[i], Latency: c.counters.ops[i].latency.snapshot(), Errors: c.counters.ops[i].errors.Load()})
	}
	c.counters.mu.Lock()
	for k, v := range c.counters.peers {
		st.Peers[k] = *v
	}
	c.counters.mu.Unlock()
	return st, true
}

// ClusterAddr returns this node's cluster address, as published in the
// directory; empty on one node.
func (e *Engine) ClusterAddr() string {
	if e.cl == nil {
		return ""
	}
	return e.cl.addr
}

// startCluster starts the remote (when configured), the peer actor and
// the eviction loop.
func (e *Engine) startCluster(cfg ClusterConfig) error {
	if cfg.NotifyTimeout == 0 {
		cfg.NotifyTimeout = 2 * time.Second
	}
	c := &clusterState{cfg: cfg, dir: cfg.Directory, public: strings.TrimRight(cfg.PublicURL, "/"), stop: make(chan struct{}),
		root: e.root, awaiting: make(map[string]map[*actor.PID]struct{})}
	if cfg.Listen != "" {
		r, err := startRemote(e.system, cfg)
		if err != nil {
			return err
		}
		c.remote = r
		c.sub = e.system.EventStream.Subscribe(c.endpointEvent)
	}
	c.addr = e.system.Address()
	if cfg.Open != nil {
		dir, err := cfg.Open(c.addr)
		if err != nil {
			if c.remote != nil {
				c.remote.Shutdown(false)
			}
			return err
		}
		c.dir = dir
	}
	e.cl = c
	if _, err := e.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &peer{engine: e} },
		actor.WithDispatcher(e.cfg.Mailboxes.dispatcher()),
		actor.WithSupervisor(stopOnPanic)), PeerActorName); err != nil {
		e.stopCluster()
		return fmt.Errorf("actors: spawn the peer actor: %w", err)
	}
	c.wg.Add(1)
	go e.evictions()
	if c.remote != nil {
		c.wg.Add(1)
		go e.linkPeers()
	}
	return nil
}

// startRemote starts protoactor's remote on the engine's actor system.
func startRemote(system *actor.ActorSystem, cfg ClusterConfig) (r *remote.Remote, err error) {
	host, p, _ := net.SplitHostPort(cfg.Listen)
	port, _ := strconv.Atoi(p)
	var opts []remote.ConfigOption
	if cfg.ServerTLS != nil {
		opts = append(opts, remote.WithServerOptions(grpc.Creds(credentials.NewTLS(cfg.ServerTLS))))
	}
	if cfg.ClientTLS != nil {
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg.ClientTLS))))
	}
	if cfg.Advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	r = remote.NewRemote(system, remote.Configure(host, port, opts...))
	// Start panics when it cannot listen.
	defer func() {
		if v := recover(); v != nil {
			r, err = nil, fmt.Errorf("actors: cluster listen %s: %v", cfg.Listen, v)
		}
	}()
	r.Start()
	return r, nil
}

// stopCluster stops the eviction loop, waits for withdrawals in flight and
// stops the remote.
func (e *Engine) stopCluster() {
	c := e.cl
	if c == nil {
		return
	}
	c.stopped.Do(func() {
		c.closing.Store(true)
		close(c.stop)
		c.wg.Wait()
		if c.remote != nil {
			e.system.EventStream.Unsubscribe(c.sub)
			c.remote.Shutdown(false)
		}
	})
}

// linkEvery is how often a node makes sure remote holds a connection to
// every other node of the directory.
const linkEvery = 2 * time.Second

// linkedCount returns how many other nodes remote holds a connection to.
func (c *clusterState) linkedCount() int {
	n := 0
	c.linked.Range(func(k, _ any) bool {
		if k != c.addr {
			n++
		}
		return true
	})
	return n
}

// linkPeers keeps a connection open to every other node, by sending a
// Cancel (which the peer actor ignores) to each node remote holds no
// connection to. A connection that exists is what makes a peer's death
// known at once: remote reports a broken stream as it happens, while a
// connection it never made is retried for about 10 s before it reports
// it failed, and a first Notify would wait out its timeout meanwhile.
func (e *Engine) linkPeers() {
	c := e.cl
	defer c.wg.Done()
	t := time.NewTicker(linkEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		if !c.dir.Healthy() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), linkEvery)
		nodes, err := c.dir.Nodes(ctx)
		cancel()
		if err != nil {
			continue
		}
		for _, n := range nodes {
			if n.Node == e.cfg.NodeID || n.ClusterAddr == "" || n.ClusterAddr == c.addr {
				continue
			}
			if _, ok := c.linked.Load(n.ClusterAddr); ok {
				continue
			}
			if _, ok := c.down.Load(n.ClusterAddr); ok {
				continue // isDown's own probe, once a second, reconnects it
			}
			probe(e.root, n.ClusterAddr)
		}
	}
}

// evictions ends the local registrations another node took over.
func (e *Engine) evictions() {
	c := e.cl
	defer c.wg.Done()
	for {
		select {
		case m := <-c.dir.Evicted():
			id, err := wire.ParseToken(m.Registration)
			if err != nil || m.Node != e.cfg.NodeID {
				continue
			}
			c.counters.evicted.Add(1)
			e.send(e.directory, &evictMsg{registration: id})
		case <-c.stop:
			return
		}
	}
}

// registerClustered publishes the registration to the cluster directory,
// then makes it locally; a failure of the second step withdraws the first.
// The directory's write blocks here, in the caller's goroutine, never in an
// actor.
func (e *Engine) registerClustered(ctx context.Context, req RegisterRequest) (*Registration, error) {
	c := e.cl
	if !c.dir.Healthy() {
		// Publish would wait for etcd to its own timeout: refuse now, and
		// let the server retry (at another node, if it has a list).
		return nil, refuseDirectoryDown
	}
	req.id = wire.NewToken()
	m := cluster.Member{Node: e.cfg.NodeID, Registration: req.id.String(), ClusterAddr: c.addr, PublicURL: c.public}
	pub := cluster.Publish{Name: req.Name, Member: m, Authenticated: req.Authenticated}
	if !req.Replaces.IsZero() {
		pub.Replaces = req.Replaces.String()
	}
	// Other nodes may route a dial here as soon as the publish lands,
	// before registerLocal: the directory holds their Notifies until then.
	e.send(e.directory, &expectMsg{name: req.Name, id: req.id})
	err := c.publish(ctx, pub)
	if errors.Is(err, cluster.ErrReplacedGone) {
		// The old registration is gone already: a plain registration.
		pub.Replaces = ""
		err = c.publish(ctx, pub)
	}
	if err != nil {
		e.send(e.directory, &expectMsg{name: req.Name, id: req.id, done: true})
	}
	switch {
	case err == nil:
	case errors.Is(err, cluster.ErrNameTaken):
		return nil, refuseNameTaken
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		e.log.Warn("cluster: publish", slog.String("name", req.Name), slog.Any("err", err))
		return nil, refuseDirectoryDown
	}
	reg, err := e.registerLocal(ctx, req)
	if err != nil {
		c.withdraw(req.Name, m)
		return nil, err
	}
	return reg, nil
}

func (c *clusterState) publish(ctx context.Context, p cluster.Publish) error {
	start := time.Now()
	err := c.dir.Publish(ctx, p)
	c.counters.ops[dirPublish].latency.observe(time.Since(start))
	if err != nil && !errors.Is(err, cluster.ErrNameTaken) && !errors.Is(err, cluster.ErrReplacedGone) {
		c.counters.ops[dirPublish].errors.Add(1)
	}
	return err
}

// withdraw removes a member from the directory, in its own goroutine: it
// is called by the listener actor when its registration ends, and an
// actor never waits for etcd. After Close nothing is withdrawn: the
// directory's own Close takes the node's names away.
func (c *clusterState) withdraw(name string, m cluster.Member) {
	if c.closing.Load() {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), replyBound)
		defer cancel()
		start := time.Now()
		err := c.dir.Withdraw(ctx, name, m)
		c.counters.ops[dirWithdraw].latency.observe(time.Since(start))
		if err != nil {
			c.counters.ops[dirWithdraw].errors.Add(1)
		}
	}()
}

// withdrawReg withdraws a local registration that has ended.
func (e *Engine) withdrawReg(reg *Registration) {
	if c := e.cl; c != nil && reg.published {
		c.withdraw(reg.Name, cluster.Member{Node: e.cfg.NodeID, Registration: reg.ID.String(), ClusterAddr: c.addr, PublicURL: c.public})
	}
}

// routeDial chooses, on a clustered engine, the member a dial goes to: a
// registration of this node (msg.registration), or another node's
// (msg.remote). A cross-node dial needs a healthy directory; without one
// the name's local members still serve, and so they do when the
// directory does not know the name.
func (e *Engine) routeDial(msg *dialMsg) error {
	c := e.cl
	m, ok := c.pick(msg.name, e.cfg.NodeID, nil)
	if !ok && c.dir.Healthy() {
		// Perhaps registered on another node a moment ago, and not yet
		// seen here: one bounded read of the directory's revision.
		ctx, cancel := context.WithTimeout(context.Background(), syncBound)
		err := c.dir.Sync(ctx)
		cancel()
		if err == nil {
			m, ok = c.pick(msg.name, e.cfg.NodeID, nil)
		}
	}
	if !ok {
		// Not in the directory's view, which can lag this node's own
		// registrations: after a lost lease the watch reports their keys
		// gone until they are published again. The directory actor
		// serves the name from its own registrations, or answers 404.
		return nil
	}
	if m.Node != e.cfg.NodeID && !c.dir.Healthy() {
		local, found := e.localMember(msg.name)
		if !found {
			c.counters.unavailable.Add(1)
			return refuseDirectoryDown
		}
		m = local
	}
	id, err := wire.ParseToken(m.Registration)
	if err != nil {
		return refuseUnknownName // not one of ours: the directory holds only tokens
	}
	msg.registration = id
	if m.Node != e.cfg.NodeID {
		msg.remote = &remoteTarget{node: m.Node, addr: m.ClusterAddr}
		c.counters.crossDials.Add(1)
	}
	return nil
}

// downFor is how long Notifies to a cluster address whose connection
// remote reported lost fail at once, instead of each waiting out the
// Notify timeout: a killed node's dials fail over, or are answered 503, at
// once. A connection made again ends it sooner; while it lasts, one probe
// a second (downProbeEvery) tries to make one, so that a node restarted at
// the same address is seen as soon as it answers.
const (
	downFor        = 10 * time.Second
	downProbeEvery = time.Second
)

// downState is a cluster address whose connection was lost.
type downState struct {
	until time.Time
	probe atomic.Int64 // unix nanos of the last probe
}

// endpointEvent follows remote's connections to other nodes, from the
// actor system's event stream.
func (c *clusterState) endpointEvent(ev any) {
	switch ev := ev.(type) {
	case *remote.EndpointTerminatedEvent:
		c.linked.Delete(ev.Address)
		c.down.Store(ev.Address, &downState{until: time.Now().Add(downFor)})
		c.connectionLost(ev.Address)
	case *remote.EndpointConnectedEvent:
		c.linked.Store(ev.Address, struct{}{})
		c.down.Delete(ev.Address)
	}
}

// await records that the pending dial pid waits for the answer to its
// Notify to addr; done forgets it.
func (c *clusterState) await(addr string, pid *actor.PID) {
	c.awaitMu.Lock()
	defer c.awaitMu.Unlock()
	set := c.awaiting[addr]
	if set == nil {
		set = make(map[*actor.PID]struct{})
		c.awaiting[addr] = set
	}
	set[pid] = struct{}{}
}

func (c *clusterState) done(addr string, pid *actor.PID) {
	c.awaitMu.Lock()
	defer c.awaitMu.Unlock()
	if set := c.awaiting[addr]; set != nil {
		delete(set, pid)
		if len(set) == 0 {
			delete(c.awaiting, addr)
		}
	}
}

// connectionLost tells every pending dial whose Notify to addr is
// unanswered that the connection there broke: remote delivers nothing
// sent on a broken stream, and the answer would only come as the Notify
// timeout. The messages go from a goroutine of their own, since remote
// publishes the event from inside its own machinery, and a pending dial
// (inline) would send its next Notify from there.
func (c *clusterState) connectionLost(addr string) {
	c.awaitMu.Lock()
	set := c.awaiting[addr]
	delete(c.awaiting, addr)
	c.awaitMu.Unlock()
	if len(set) == 0 || c.closing.Load() {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for pid := range set {
			c.root.Send(pid, &connectionLostMsg{addr: addr})
		}
	}()
}

// connectionLostMsg tells a pending dial that the connection to addr,
// where its Notify went, broke before the answer came.
type connectionLostMsg struct {
	quiet
	addr string
}

// isDown reports whether Notifies to addr should fail at once. When they
// should, it sends at most one probe a second: a Cancel, which the peer
// actor ignores, whose delivery makes remote connect again.
func (c *clusterState) isDown(root *actor.RootContext, addr string) bool {
	v, ok := c.down.Load(addr)
	if !ok {
		return false
	}
	d := v.(*downState)
	now := time.Now()
	if now.After(d.until) {
		c.down.CompareAndDelete(addr, v)
		return false
	}
	last := d.probe.Load()
	if now.UnixNano()-last >= int64(downProbeEvery) && d.probe.CompareAndSwap(last, now.UnixNano()) {
		probe(root, addr)
	}
	return true
}

// probe sends the peer actor at addr a Cancel, which it ignores: its
// delivery makes remote connect there.
func probe(root *actor.RootContext, addr string) {
	root.Send(actor.NewPID(addr, PeerActorName), &clusterpb.Cancel{})
}

// suspectFor is how long a node whose Notify failed is avoided by the
// picks of dials that have another member to go to: long enough to cover
// a dead node's lease, after which its names are gone anyway.
const suspectFor = 10 * time.Second

func (c *clusterState) suspect(node string) {
	c.suspects.Store(node, time.Now().Add(suspectFor))
}

func (c *clusterState) trusted(node string) {
	c.suspects.Delete(node)
}

// downAddr reports, without probing, whether addr's connection is lost.
func (c *clusterState) downAddr(addr string) bool {
	v, ok := c.down.Load(addr)
	return ok && time.Now().Before(v.(*downState).until)
}

func (c *clusterState) suspected(node string) bool {
	v, ok := c.suspects.Load(node)
	if !ok {
		return false
	}
	if time.Now().After(v.(time.Time)) {
		c.suspects.CompareAndDelete(node, v)
		return false
	}
	return true
}

// pick returns the next member of name, round robin, passing over the
// members of nodes in avoid and of suspected nodes (this node is never
// suspected) while another member is left; ok is false for an unknown
// name, or when every member is on a node in avoid.
func (c *clusterState) pick(name, self string, avoid []string) (cluster.Member, bool) {
	var fallback cluster.Member
	found := false
	for range 8 { // a bounded walk of the round robin
		m, ok := c.dir.Pick(name)
		if !ok {
			break
		}
		if slices.Contains(avoid, m.Node) {
			continue
		}
		if m.Node == self || (!c.suspected(m.Node) && !c.downAddr(m.ClusterAddr)) {
			return m, true
		}
		if !found {
			fallback, found = m, true
		}
	}
	return fallback, found
}

func (e *Engine) localMember(name string) (cluster.Member, bool) {
	for _, m := range e.cl.dir.Members(name) {
		if m.Node == e.cfg.NodeID {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// remoteTarget is the node holding the registration a cross-node dial
// goes to.
type remoteTarget struct {
	node string
	addr string // its cluster address
}

// dialRemote makes the pending dial of a cross-node dial, as a child of
// the directory. The pending actor sends the Notify to the holding node.
func (d *directory) dialRemote(ctx actor.Context, m *dialMsg) {
	e := d.engine
	m.token = wire.NewToken()
	now := time.Now()
	deadline := now.Add(e.cfg.CallbackTimeout)
	tok := m.token.String()
	pd := &PendingDial{Token: m.token, Deadline: deadline, outcome: make(chan Outcome, 1), engine: e}
	p := &pending{
		engine:   e,
		token:    m.token,
		listener: ctx.Self(),
		// Counts this node's pairs of the remote registration; it is in
		// no directory.
		registration: &Registration{Name: m.name, ID: m.registration, engine: e},
		clientName:   m.clientName,
		clientAddr:   m.clientAddr,
		dialed:       now,
		deadline:     deadline,
		outcome:      pd.outcome,
		notify: &notifyTo{
			node: m.remote.node,
			pid:  actor.NewPID(m.remote.addr, PeerActorName),
			msg: &clusterpb.Notify{
				Name: m.name, Registration: m.registration.String(), Token: tok,
				ClientName: m.clientName, ClientAddr: m.clientAddr,
				CallbackUrl:      e.cl.public + wire.PathAccept + tok,
				DeadlineUnixNano: deadline.UnixNano(),
			},
		},
	}
	e.stats.started(kindPending)
	pid := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return p },
		actor.WithMailbox(e.cfg.Mailboxes.Pending.producer(e.stats.mailbox(kindPending))),
		actor.WithDispatcher(e.cfg.Mailboxes.dispatcher())))
	pd.pid = pid
	d.remote[m.token] = pid
	m.reply <- dialReply{pending: pd}
}

// notifyTo is the Notify a cross-node pending dial sends on start.
type notifyTo struct {
	node string
	pid  *actor.PID
	msg  *clusterpb.Notify
}

// sendNotify sends the pending dial's Notify and takes the answer as a
// message, without blocking the actor: a refusal or no answer ends the
// dial with the holder's status (503 for no answer).
func (p *pending) sendNotify(ctx actor.Context) {
	n := p.notify
	timeout := min(p.engine.cl.cfg.NotifyTimeout, time.Until(p.deadline))
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	c := p.engine.cl
	// Counted now: the answer may never be read, when the callback has
	// already ended the dial.
	c.counters.peer(n.node, false)
	if n.pid.Address != c.addr && c.isDown(p.engine.root, n.pid.Address) {
		p.notifyFailed(ctx, errPeerConnectionLost)
		return
	}
	p.notifySeq++
	seq, self := p.notifySeq, ctx.Self()
	c.await(n.pid.Address, self)
	p.awaiting = true
	f := ctx.RequestFuture(n.pid, n.msg, timeout)
	sent := time.Now()
	ctx.ReenterAfter(f, func(res any, err error) {
		if seq != p.notifySeq {
			return // this Notify was given up (connection lost) and another sent
		}
		p.awaiting = false
		c.done(n.pid.Address, self)
		counters := &c.counters
		if err != nil {
			p.notifyFailed(ctx, err)
			return
		}
		c.trusted(n.node)
		counters.notify.observe(time.Since(sent))
		r, ok := res.(*clusterpb.NotifyReply)
		switch {
		case !ok:
			p.finish(ctx, Outcome{Err: refuseBadNotify})
		case r.Status == 0:
			// The event is queued at the holder: wait for the callback.
		case r.Status == int32(refuseDraining.Status) && r.Reason == refuseDraining.Reason && !p.sent && p.retarget(ctx):
			// The holder drains (a rolling restart): another member of
			// the name serves, if there is one.
			c.suspect(n.node)
		case r.Status >= 400 && r.Status <= 599:
			p.finish(ctx, Outcome{Err: &Refusal{Status: int(r.Status), Reason: clip(r.Reason, 128)}})
		default:
			p.finish(ctx, Outcome{Err: refuseBadNotify})
		}
	})
}

// notifyFailed fails the pending dial's current Notify (err: no answer,
// not deliverable, or the connection lost): the node is suspected, and the
// dial moves to another member of its name, or is answered 503.
func (p *pending) notifyFailed(ctx actor.Context, err error) {
	n, c := p.notify, p.engine.cl
	c.counters.peer(n.node, true)
	c.suspect(n.node)
	p.engine.log.Debug("cluster: notify failed", slog.String("peer", n.node), slog.String("addr", n.pid.Address), slog.Any("err", err))
	if !p.sent && p.retarget(ctx) {
		return
	}
	p.finish(ctx, Outcome{Err: refusePeerDown})
}

// connectionLost fails the Notify still unanswered at addr over at once.
func (p *pending) connectionLost(ctx actor.Context, addr string) {
	if !p.awaiting || p.notify == nil || p.notify.pid.Address != addr {
		return // answered meanwhile, or already sent elsewhere
	}
	p.awaiting = false
	p.notifySeq++ // the first Notify's late answer is ignored
	p.notifyFailed(ctx, errPeerConnectionLost)
}

// maxNotifyTries bounds the members one cross-node dial tries.
const maxNotifyTries = 3

// retarget moves a dial whose Notify failed to another member of its
// name, on another node (this one included, through its own peer actor),
// and sends the Notify there. It reports false when no member is left, the
// tries are used up, or the deadline is near.
func (p *pending) retarget(ctx actor.Context) bool {
	n := p.notify
	p.tried = append(p.tried, n.node)
	e := p.engine
	if len(p.tried) >= maxNotifyTries || time.Until(p.deadline) < 100*time.Millisecond {
		return false
	}
	m, ok := e.cl.pick(n.msg.Name, e.cfg.NodeID, p.tried)
	if !ok {
		return false
	}
	id, err := wire.ParseToken(m.Registration)
	if err != nil {
		return false
	}
	msg := &clusterpb.Notify{
		Name: n.msg.Name, Registration: m.Registration, Token: n.msg.Token,
		ClientName: n.msg.ClientName, ClientAddr: n.msg.ClientAddr,
		CallbackUrl: n.msg.CallbackUrl, DeadlineUnixNano: n.msg.DeadlineUnixNano,
	}
	// A member of this node is published at this node's own address.
	p.notify = &notifyTo{node: m.Node, pid: actor.NewPID(m.ClusterAddr, PeerActorName), msg: msg}
	// The callback's 403 check reads it (pending's callbackMsg).
	p.registration = &Registration{Name: n.msg.Name, ID: id, engine: e}
	p.sendNotify(ctx)
	return true
}

// clip cuts s to at most n bytes and to printable ASCII: a peer's reason
// goes into an HTTP body.
func clip(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// remoteCallback routes a callback for a cross-node dial made here to
// its pending actor, which checks the registration id (a retargeted dial
// waits on another one than it began with). It reports false when the
// token is not one of them.
func (d *directory) remoteCallback(ctx actor.Context, m *callbackMsg) bool {
	pid, ok := d.remote[m.token]
	if ok {
		ctx.Send(pid, m)
	}
	return ok
}

// remoteDone retires a cross-node pending dial that has sent its outcome.
func (d *directory) remoteDone(ctx actor.Context, token wire.Token) {
	if pid, ok := d.remote[token]; ok {
		delete(d.remote, token)
		// Spent, as a local dial's token: a replay is 410, not 404.
		d.tombstones.Add(token, struct{}{})
		ctx.Poison(pid)
	}
}

// peer is the well-known actor other nodes send their Notify messages to.
// It checks them and hands them to the directory; the answer goes back to
// the sender from the listener (or the directory), never waited for here.
type peer struct{ engine *Engine }

func (p *peer) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *clusterpb.Notify:
		nm, err := parseNotify(m)
		if err != nil {
			p.engine.cl.counters.notifyRefused.Add(1)
			p.engine.log.Debug("cluster: notify refused", slog.Any("err", err))
			replyNotify(ctx, ctx.Sender(), refuseBadNotify)
			return
		}
		nm.sender = ctx.Sender()
		ctx.Send(p.engine.directory, nm)
	case *clusterpb.Cancel:
		// Nothing to forget: the holder keeps no state for a notified
		// dial (the pending dial lives on the dialed node, which spends
		// the token). A callback the server still makes gets 410 there.
	}
}

// notifyMsg is a checked Notify, routed directory → listener.
type notifyMsg struct {
	quiet
	name         string
	registration wire.Token
	event        wire.ConnectEvent
	sender       *actor.PID // the dialed node's future; nil if it asked no answer
}

// parseNotify checks a Notify from the network.
func parseNotify(n *clusterpb.Notify) (*notifyMsg, error) {
	if err := wire.CheckName(n.Name); err != nil {
		return nil, fmt.Errorf("notify: name: %w", err)
	}
	reg, err := wire.ParseToken(n.Registration)
	if err != nil {
		return nil, fmt.Errorf("notify: registration: %w", err)
	}
	tok, err := wire.ParseToken(n.Token)
	if err != nil {
		return nil, fmt.Errorf("notify: token: %w", err)
	}
	if n.ClientName != "" {
		if err := wire.CheckName(n.ClientName); err != nil {
			return nil, fmt.Errorf("notify: client name: %w", err)
		}
	}
	if len(n.ClientAddr) > 256 {
		return nil, errors.New("notify: client address too long")
	}
	if len(n.CallbackUrl) > 2048 {
		return nil, errors.New("notify: callback URL too long")
	}
	u, err := url.Parse(n.CallbackUrl)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(u.Path, wire.PathAccept+tok.String()) {
		return nil, fmt.Errorf("notify: callback URL %q is not an absolute accept URL for its token", n.CallbackUrl)
	}
	return &notifyMsg{
		name: n.Name, registration: reg,
		event: wire.ConnectEvent{
			Token: tok.String(), Client: n.ClientName, ClientAddr: clip(n.ClientAddr, 256),
			Callback: n.CallbackUrl, DeadlineUnixMilli: n.DeadlineUnixNano / int64(time.Millisecond),
		},
	}, nil
}

// replyNotify answers a Notify: nil rf means the event was queued.
func replyNotify(ctx actor.SenderContext, to *actor.PID, rf *Refusal) {
	if to == nil {
		return
	}
	r := &clusterpb.NotifyReply{}
	if rf != nil {
		r.Status, r.Reason = int32(rf.Status), rf.Reason
	}
	ctx.Send(to, r)
}

// notify routes a checked Notify to the listener of its registration.
func (d *directory) notify(ctx actor.Context, m *notifyMsg) {
	if d.draining {
		replyNotify(ctx, m.sender, refuseDraining)
		return
	}
	var pid *actor.PID
	if g := d.names[m.name]; g != nil {
		pid = d.member(g, m.registration)
	}
	if pid == nil {
		if x := d.expected[m.registration]; x != nil && x.name == m.name {
			// Published, and its registerMsg is on its way: the Notify
			// waits for it, as many as the listener's event queue holds.
			if len(x.waiting) < d.engine.cfg.EventQueue {
				x.waiting = append(x.waiting, m)
				d.engine.cl.counters.notifyWaited.Add(1)
				return
			}
			d.engine.stats.queueFull.Add(1)
			replyNotify(ctx, m.sender, refuseQueueFull)
			return
		}
		d.engine.cl.counters.notifyRefused.Add(1)
		replyNotify(ctx, m.sender, refuseListenerGone)
		return
	}
	ctx.Send(pid, m)
}

// notify queues the connect event of a dial made on another node. The
// callback goes to that node, which holds the pending dial; nothing is
// kept here. A parked callback cannot take it: it is connected to this
// node, and the dial waits on the other. Cross-node dials are always cold.
func (l *listener) notify(ctx actor.Context, m *notifyMsg) {
	switch {
	case l.closed:
		replyNotify(ctx, m.sender, refuseListenerGone)
	case l.drained:
		replyNotify(ctx, m.sender, refuseDraining)
	case len(l.reg.events) == cap(l.reg.events):
		l.engine.stats.queueFull.Add(1)
		replyNotify(ctx, m.sender, refuseQueueFull)
	default:
		l.enqueue(&StreamEvent{Type: wire.EventConnect, Connect: m.event})
		l.engine.cl.counters.notified.Add(1)
		replyNotify(ctx, m.sender, nil)
	}
}

// evictMsg ends the local registration whose id is registration: another
// node took its name over. Sent to the directory.
type evictMsg struct {
	quiet
	registration wire.Token
}

func (d *directory) evict(ctx actor.Context, m *evictMsg) {
	for _, reg := range d.regs {
		if subtle.ConstantTimeCompare(reg.ID[:], m.registration[:]) == 1 {
			d.engine.log.Info("evicted: another node took the name over", slog.String("name", reg.Name))
			d.unregister(ctx, reg.pid)
			return
		}
	}
}

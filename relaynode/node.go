package relaynode

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/actors/cluster"
	"github.com/clusterlink-relay/relay/wire"
)

// Node is a relay. It is an http.Handler: http.ListenAndServe(addr, node)
// runs it. ListenAndServe, Serve, Shutdown and Close add the lifecycle.
type Node struct {
	cfg    Config
	tls    *tls.Config // nil: plain TCP
	log    *slog.Logger
	engine *actors.Engine
	dir    *cluster.Etcd // the cluster directory; nil on one node

	counters counters
	// leanWorkers counts the goroutines the lean path started to serve
	// connections (each then serves the next ones it is handed).
	leanWorkers atomic.Int64
	edge        *edge
	gate        *connGate
	auth        atomic.Pointer[authRules] // nil: no auth file
	// requireClientCert is set when the TLS config verifies client
	// certificates: registrations then need a SAN covering the name.
	requireClientCert bool
	started           time.Time

	rates rates // the samples behind Status's rates

	v0 compatV0 // the v0 wire's state (CompatV0)

	handlers sync.WaitGroup // ServeHTTP calls in flight
	draining atomic.Bool

	mu        sync.Mutex            // guards the following
	servers   map[*http.Server]bool // true for admin servers, which outlive a drain
	closing   bool                  // set by Close: no new handlers, no new servers
	conns     int                   // connections of our servers not yet closed or hijacked
	connsGone *sync.Cond            // signalled when conns falls to zero
}

// New returns a Node for cfg, whose zero value means safe defaults.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	ec := cfg.engineConfig()
	var dir *cluster.Etcd
	if cfg.clustered() {
		cc, err := cfg.joinCluster(&dir)
		if err != nil {
			return nil, err
		}
		ec.Cluster = cc
	}
	engine, err := actors.NewEngine(ec)
	if err != nil {
		if dir != nil {
			dir.Close()
		}
		return nil, err
	}
	n := &Node{
		dir:     dir,
		cfg:     cfg,
		tls:     tlsCfg,
		log:     cfg.Logger,
		engine:  engine,
		servers: make(map[*http.Server]bool),
		started: time.Now(),
	}
	n.edge = newEdge(&n.cfg)
	n.gate = newConnGate(n)
	if cfg.AuthFile != "" {
		a, err := loadAuthFile(cfg.AuthFile)
		if err != nil {
			engine.Close()
			if dir != nil {
				dir.Close()
			}
			return nil, err
		}
		n.auth.Store(a)
	}
	n.requireClientCert = tlsCfg != nil && tlsCfg.ClientAuth >= tls.VerifyClientCertIfGiven
	n.connsGone = sync.NewCond(&n.mu)
	n.startSampling()
	n.warnCompatV0()
	return n, nil
}

// OpenMode reports whether anyone may register any free name: no auth
// file and no client certificates.
func (n *Node) OpenMode() bool { return !n.authMode() }

// Stats is a snapshot of a node's live counts and engine counters.
type Stats struct {
	// NodeID is the id announced in ready events.
	NodeID string
	// Registrations, Pending and Pairs are the live registrations,
	// dials waiting for their callback, and spliced pairs still copying:
	// each is the engine's one count of its actors of that kind.
	Registrations int64
	Pending       int64
	Pairs         int64
	// Parked is the number of callbacks parked in warm pools.
	Parked int64
	// Spliced counts pairs started; Expired dials answered 504;
	// PairingsFailed matches where one side never arrived; ForeignToken
	// callbacks refused for another registration's token; Replaced
	// registrations taken over by their own reconnect.
	Spliced        int64
	Expired        int64
	PairingsFailed int64
	ForeignToken   int64
	Replaced       int64
	// PairsIdle, PairsMaxDuration and PairsMaxBytes count pairs cut by
	// each limit.
	PairsIdle        int64
	PairsMaxDuration int64
	PairsMaxBytes    int64
	// BytesToServer and BytesToClient count relayed bytes each way.
	BytesToServer int64
	BytesToClient int64
	// Actors is the engine's whole snapshot, for tools and tests: each
	// actor kind's live count, messages processed and mailbox depth, and
	// the splice latency histograms. A copy: reading it reaches nothing
	// inside the node.
	Actors actors.Stats
}

// Stats returns a snapshot of the node's counters. It takes no lock and
// sends no message.
func (n *Node) Stats() Stats {
	st := n.engine.Stats()
	return Stats{
		NodeID:           n.engine.NodeID(),
		Registrations:    st.Kinds[actors.KindListener].Live,
		Pending:          st.Kinds[actors.KindPending].Live,
		Pairs:            st.Kinds[actors.KindPair].Live,
		Parked:           st.Parked,
		Spliced:          st.Spliced,
		Expired:          st.Expired,
		PairingsFailed:   st.PairingsFailed,
		ForeignToken:     st.ForeignToken,
		Replaced:         st.Replaced,
		PairsIdle:        st.PairsIdle,
		PairsMaxDuration: st.PairsMaxDuration,
		PairsMaxBytes:    st.PairsMaxBytes,
		BytesToServer:    st.BytesToServer,
		BytesToClient:    st.BytesToClient,
		Actors:           st,
	}
}

// ServeHTTP routes a protocol request. Every refusal is a status and a
// short text body, sent before any switch to raw bytes.
func (n *Node) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	if lw, ok := rw.(*leanWriter); ok {
		// The lean path writes Relay-Node itself, on a refusal only.
		w.keepAliveSet = lw.lc.ls.keepAlive
	} else {
		_, w.keepAliveSet = servedConn(r.Context())
		w.Header().Set(wire.HeaderNode, n.engine.NodeID())
	}
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		refuse(w, http.StatusServiceUnavailable, "relay closed")
		return
	}
	n.handlers.Add(1)
	n.mu.Unlock()
	defer n.handlers.Done()
	if n.cfg.CompatV0 && n.serveV0(w, r) {
		return
	}
	route, arg, err := wire.ParseRoute(r.Method, r.URL.Path)
	defer n.count(route, w)
	if err != nil {
		var re *wire.RouteError
		if errors.As(err, &re) {
			if re.Status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", http.MethodPost)
			}
			refuse(w, re.Status, re.Reason)
			return
		}
		refuse(w, http.StatusBadRequest, "bad request")
		return
	}
	if n.draining.Load() && route != wire.RouteAccept {
		// Callbacks are still served: they complete dials made before
		// the drain.
		refuse(w, http.StatusServiceUnavailable, "relay draining")
		return
	}
	if r.ContentLength != 0 {
		// The protocol's requests have no body: refuse one unread, so a
		// slow or huge body costs nothing. net/http would otherwise try to
		// drain up to 256 KiB of it after the answer, with no deadline: a
		// read deadline in the past makes it give up and close at once.
		_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
		refuse(w, http.StatusRequestEntityTooLarge, "request body not allowed")
		return
	}
	switch route {
	case wire.RouteListen:
		n.serveListen(w, r, arg)
	case wire.RouteDial:
		n.serveDial(w, r, arg)
	case wire.RouteAccept:
		n.serveAccept(w, r, arg)
	case wire.RoutePark:
		n.servePark(w, r, arg)
	}
}

// refuse answers a refusal: status and a short text/plain body.
func refuse(w http.ResponseWriter, status int, reason string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.reason = reason
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(reason + "\n"))
}

// refuseErr answers an engine error.
func refuseErr(w http.ResponseWriter, err error) {
	var rf *actors.Refusal
	switch {
	case errors.As(err, &rf):
		refuse(w, rf.Status, rf.Reason)
	case errors.Is(err, actors.ErrClosed):
		refuse(w, http.StatusServiceUnavailable, "relay closed")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client has gone; nobody reads an answer.
		if sw, ok := w.(*statusWriter); ok {
			sw.status = statusClientGone
		}
	default:
		refuse(w, http.StatusInternalServerError, "internal error")
	}
}

// ListenAndServe listens on the TCP address addr (with Listen) and serves
// the relay on it. It returns http.ErrServerClosed after Shutdown or Close.
func (n *Node) ListenAndServe(addr string) error {
	ln, err := Listen("tcp", addr)
	if err != nil {
		return err
	}
	return n.Serve(ln)
}

// Serve serves the relay on ln, with the node's header timeout and size
// limit, over TLS when the Config has a certificate. It returns
// http.ErrServerClosed after Shutdown or Close.
func (n *Node) Serve(ln net.Listener) error {
	var key any = connKey{}
	_, keepAliveSet := ln.(*keepAliveListener)
	if keepAliveSet {
		key = keepAliveConnKey{}
	}
	ln = n.gate.listener(ln)
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls)
	} else if !n.cfg.CompatV0 {
		// The hot routes take the lean path (lean.go); the http.Server
		// gets every other connection.
		ln = newLeanServer(n, ln, keepAliveSet)
	}
	srv := &http.Server{
		Handler:           n,
		ReadHeaderTimeout: n.cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    n.cfg.MaxHeaderBytes,
		// No WriteTimeout: it would cut every SSE stream. Each event
		// write has its own deadline instead.
		IdleTimeout: 60 * time.Second,
		ErrorLog:    slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: an HTTP/2 request cannot be hijacked.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState: func(c net.Conn, st http.ConnState) {
			n.connState(c, st)
			n.gate.state(c, st)
		},
		// The handlers reach their socket through the context, to cap a
		// registration stream's send buffer.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, key, c)
		},
	}
	return n.serve(srv, ln, false)
}

// serve tracks srv, an admin server or not, and serves ln with it until
// Shutdown or Close; after Close it closes ln and returns at once.
func (n *Node) serve(srv *http.Server, ln net.Listener, admin bool) error {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	n.servers[srv] = admin
	n.mu.Unlock()
	return srv.Serve(ln)
}

// connKey is the context key of a request's net.Conn, on servers the node
// runs itself.
type connKey struct{}

// connState counts our servers' connections, so that Close can wait for
// their goroutines: http.Server.Close does not (after an error response it
// lingers up to 500ms in closeWriteAndWait).
func (n *Node) connState(_ net.Conn, st http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch st {
	case http.StateNew:
		n.conns++
	case http.StateClosed, http.StateHijacked:
		n.conns--
		if n.conns == 0 {
			n.connsGone.Broadcast()
		}
	}
}

// waitConns waits, at most d, for our servers' connections to be gone.
func (n *Node) waitConns(d time.Duration) {
	t := time.AfterFunc(d, func() {
		n.mu.Lock()
		n.connsGone.Broadcast()
		n.mu.Unlock()
	})
	defer t.Stop()
	deadline := time.Now().Add(d)
	n.mu.Lock()
	for n.conns > 0 && time.Now().Before(deadline) {
		n.connsGone.Wait()
	}
	left := n.conns
	n.mu.Unlock()
	if left > 0 {
		n.log.Warn("close: connections still open", slog.Int("conns", left))
	}
}

// Shutdown drains the relay: new registrations and dials get 503; every
// stream is sent the events already queued and a drain event; dials made
// before the drain still get their callbacks (the accept route stays open)
// until none is pending; then the servers stop accepting, and live pairs
// may finish until ctx ends, when they are cut. It returns after
// every goroutine and actor the node owns has ended, with ctx's error if
// pairs had to be cut.
func (n *Node) Shutdown(ctx context.Context) error {
	n.draining.Store(true)
	n.engine.Drain("shutdown")
	// The admin servers keep answering through the drain: /readyz says 503
	// so that load balancers stop sending traffic. Close ends them.
	n.mu.Lock()
	servers := make([]*http.Server, 0, len(n.servers))
	for s, admin := range n.servers {
		if !admin {
			servers = append(servers, s)
		}
	}
	n.mu.Unlock()
	// Dials made before the drain get their callbacks first: the streams
	// stay open, and the servers accept, until no dial is pending.
	err := n.engine.WaitNone(ctx, actors.KindPending)
	for _, s := range servers {
		if e := s.Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	}
	if err == nil {
		err = n.engine.WaitNone(ctx, actors.KindPair)
	}
	n.Close()
	return err
}

// Close stops the relay at once: servers close, streams end, pending dials
// are answered, pairs are cut. It returns after every goroutine and actor
// the node owns has ended, and is safe to call twice.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return nil
	}
	n.closing = true
	servers := make([]*http.Server, 0, len(n.servers))
	for s := range n.servers {
		servers = append(servers, s)
	}
	n.mu.Unlock()
	for _, s := range servers {
		s.Close()
	}
	// Stopping the engine answers every pending dial and ends every
	// registration, which returns their handlers.
	err := n.engine.Close()
	if n.dir != nil {
		// Revokes the lease: the node's names leave the cluster at once.
		if e := n.dir.Close(); e != nil {
			n.log.Warn("close the cluster directory", slog.Any("err", e))
		}
	}
	n.handlers.Wait()
	n.waitConns(2 * time.Second)
	n.gate.close()
	n.stopSampling()
	return err
}

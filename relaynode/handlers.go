package relaynode

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/wire"
)

// eventPool holds the buffers SSE events are encoded into.
var eventPool bytebufferpool.Pool

// serveListen holds a registration stream open: a ready event, then connect
// and drain events from the registration's queue and heartbeat comments,
// each written under its own deadline. It returns when the client goes, the
// registration ends, or a write fails; the registration ends with it.
func (n *Node) serveListen(w http.ResponseWriter, r *http.Request, name string) {
	// A reconnecting server presents the id of its old registration, which
	// lets it take its name back before the relay has noticed the old
	// stream is dead.
	var replaces wire.Token
	if h := r.Header.Get(wire.HeaderRegistration); h != "" {
		t, err := wire.ParseToken(h)
		if err != nil {
			refuse(w, http.StatusBadRequest, "malformed "+wire.HeaderRegistration)
			return
		}
		replaces = t
	}
	authenticated, err := n.authorizeRegister(r, name)
	if err != nil {
		refuseAuth(w, err)
		return
	}
	addr := n.clientAddr(r)
	key := n.edge.key(addr)
	if rf := n.edge.admitRegistration(key); rf != nil {
		refuseErr(w, rf)
		return
	}
	defer n.edge.releaseRegistration(key)
	var v0Held *actors.Registration // a v0 registration an authenticated one takes over
	if n.cfg.CompatV0 && authenticated {
		v0Held = n.v0.reg(name)
	}
	reg, err := n.engine.Register(r.Context(), actors.RegisterRequest{
		Name: name, ClientAddr: addr, Replaces: replaces, Authenticated: authenticated,
	})
	if err != nil {
		n.log.Debug("register refused", slog.String("name", name), slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		refuseErr(w, err)
		return
	}
	n.v0TakenOver(name, v0Held)
	defer reg.Close()
	n.edge.nameUp(name)
	defer n.edge.nameDown(name)
	n.capSendBuffer(r)

	n.holdStream(w, r, reg, name, streamWire{
		open: func(b []byte) []byte {
			b, _ = wire.AppendJSONEvent(b, wire.EventReady, wire.ReadyEvent{
				Node:            n.engine.NodeID(),
				Registration:    reg.ID.String(),
				HeartbeatMillis: n.cfg.Heartbeat.Milliseconds(),
			})
			return b
		},
		event: func(b []byte, ev *actors.StreamEvent) ([]byte, error) {
			if ev.Type == wire.EventConnect {
				return wire.AppendConnectEvent(b, ev.Connect), nil
			}
			return wire.AppendJSONEvent(b, ev.Type, ev.Drain)
		},
		heartbeat: true,
		dropped:   "stream dropped",
	})
}

// streamWire is what one wire writes on a registration stream; holdStream
// does the rest.
type streamWire struct {
	// open appends the stream's first event, which goes out with the
	// header; nil: the header is flushed alone.
	open func(b []byte) []byte
	// event appends a queued event, or the drain event, to b. When it
	// appends nothing, nothing is written.
	event func(b []byte, ev *actors.StreamEvent) ([]byte, error)
	// heartbeat sends a comment every Config.Heartbeat.
	heartbeat bool
	// dropped is the debug message logged when a write fails.
	dropped string
}

// holdStream owns a registration's event stream once the registration is
// made: the 200 event-stream header, every write (under
// Config.EventWriteTimeout, then flushed), heartbeats, and on drain the
// events still queued, the drain event and the wait for pending dials to
// settle. It returns when the client goes, the registration ends or
// settles, or a write fails.
func (n *Node) holdStream(w http.ResponseWriter, r *http.Request, reg *actors.Registration, name string, sw streamWire) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", wire.ContentTypeEventStream)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	bb := eventPool.Get()
	defer eventPool.Put(bb)
	write := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(n.cfg.EventWriteTimeout)); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if sw.open != nil {
		bb.B = sw.open(bb.B[:0])
		if err := write(bb.B); err != nil {
			return
		}
	} else if err := rc.Flush(); err != nil {
		return
	}
	writeEvent := func(ev *actors.StreamEvent) error {
		var err error
		bb.B, err = sw.event(bb.B[:0], ev)
		if err != nil || len(bb.B) == 0 {
			return err
		}
		return write(bb.B)
	}
	var tick <-chan time.Time
	if sw.heartbeat {
		t := time.NewTicker(n.cfg.Heartbeat)
		defer t.Stop()
		tick = t.C
	}
	for {
		var err error
		select {
		case ev := <-reg.Events():
			err = writeEvent(ev)
		case <-tick:
			err = write(wire.AppendComment(bb.B[:0], "hb"))
		case <-reg.Drained():
			// Connect events already queued go out first: their dials
			// are live. Then the drain event (none on v0) ends the
			// stream.
			for err == nil && reg.Queued() > 0 {
				err = writeEvent(<-reg.Events())
			}
			if err == nil {
				err = writeEvent(&actors.StreamEvent{Type: wire.EventDrain, Drain: wire.DrainEvent{Reason: reg.DrainReason()}})
			}
			if err == nil {
				// Keep the registration until its pending dials settle:
				// the server is calling them back (callbacks are still
				// served while draining), or they time out.
				n.settle(r.Context(), reg)
				return
			}
		case <-reg.Done():
			return
		case <-r.Context().Done():
			return
		}
		if err != nil {
			n.log.Debug(sw.dropped, slog.String("name", name), slog.Any("err", err))
			return
		}
	}
}

// settle waits until the drained reg has no pending dial, the
// registration ends, or ctx ends. The listener actor signals it.
func (n *Node) settle(ctx context.Context, reg *actors.Registration) {
	select {
	case <-reg.Settled():
	case <-reg.Done():
	case <-ctx.Done():
	}
}

// isUpgrade reports whether r asks to switch to the relay's raw protocol.
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), wire.UpgradeProtocol)
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func refuseNoUpgrade(w http.ResponseWriter) {
	w.Header().Set("Upgrade", wire.UpgradeProtocol)
	refuse(w, http.StatusUpgradeRequired, "upgrade to "+wire.UpgradeProtocol+" required")
}

// serveDial holds a client's dial until it is matched, refused or timed out.
// Only a match hijacks the connection; every other answer is plain HTTP.
func (n *Node) serveDial(w http.ResponseWriter, r *http.Request, name string) {
	if !isUpgrade(r) {
		refuseNoUpgrade(w)
		return
	}
	client := r.Header.Get(wire.HeaderClientName)
	if client != "" {
		if err := wire.CheckName(client); err != nil {
			refuse(w, http.StatusBadRequest, "invalid client name")
			return
		}
	}
	if err := n.authorizeDial(r, name); err != nil {
		refuseAuth(w, err)
		return
	}
	addr := n.clientAddr(r)
	key := n.edge.key(addr)
	if rf := n.edge.admitDial(key, name, n.engine); rf != nil {
		refuseErr(w, rf)
		return
	}
	defer n.edge.release(key)
	pd, err := n.engine.Dial(r.Context(), name, client, addr)
	if err != nil {
		n.log.Debug("dial refused", slog.String("name", name), slog.Any("err", err))
		var rf *actors.Refusal
		if errors.As(err, &rf) && rf.Status == http.StatusNotFound {
			n.edge.unknownName(name)
		}
		refuseErr(w, err)
		return
	}
	o := pd.Wait(r.Context())
	if o.Err != nil {
		refuseErr(w, o.Err)
		return
	}
	if r.Context().Err() != nil {
		o.Pairing.Abort(actors.Client)
		return
	}
	n.upgrade(w, o.Pairing, actors.Client)
}

// serveAccept takes a server's callback: the token must be live and belong
// to the presenting registration, or it is refused before any hijack.
func (n *Node) serveAccept(w http.ResponseWriter, r *http.Request, tokenText string) {
	if !isUpgrade(r) {
		refuseNoUpgrade(w)
		return
	}
	token, err := wire.ParseToken(tokenText)
	if err != nil {
		refuse(w, http.StatusBadRequest, "malformed token")
		return
	}
	regID, ok := registrationHeader(w, r)
	if !ok {
		return
	}
	p, err := n.engine.Callback(r.Context(), token, regID)
	if err != nil {
		n.log.Debug("callback refused", slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		refuseErr(w, err)
		return
	}
	n.upgrade(w, p, actors.Server)
}

// registrationHeader returns the registration id a callback or park
// presents, or answers 400 and reports false.
func registrationHeader(w http.ResponseWriter, r *http.Request) (wire.Token, bool) {
	id, err := wire.ParseToken(r.Header.Get(wire.HeaderRegistration))
	if err != nil {
		refuse(w, http.StatusBadRequest, "missing or malformed "+wire.HeaderRegistration)
		return wire.Token{}, false
	}
	return id, true
}

// servePark holds a parked callback of the warm pool until a dial is
// handed to it (101, as for a callback), ParkTimeout passes (204: park
// again), or its registration ends (410) or drains (503). A park whose
// client goes away leaves the pool; a dial handed to it just then is given
// back and goes to another parked callback or the stream.
func (n *Node) servePark(w http.ResponseWriter, r *http.Request, name string) {
	if !isUpgrade(r) {
		refuseNoUpgrade(w)
		return
	}
	regID, ok := registrationHeader(w, r)
	if !ok {
		return
	}
	key := n.edge.key(n.clientAddr(r))
	if rf := n.edge.admitPark(key, n.engine); rf != nil {
		refuseErr(w, rf)
		return
	}
	defer n.edge.release(key)
	p, err := n.engine.Park(r.Context(), name, regID)
	if err != nil {
		refuseErr(w, err)
		return
	}
	timer := time.NewTimer(n.cfg.ParkTimeout)
	defer timer.Stop()
	reg := p.Registration
	select {
	case <-p.Woken():
	case <-r.Context().Done():
		if !p.Leave() {
			p.Fail() // woken just now: the dial goes elsewhere
		}
		return
	case <-timer.C:
		if p.Leave() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	case <-reg.Done():
		if p.Leave() {
			refuse(w, http.StatusGone, "registration ended")
			return
		}
	case <-reg.Drained():
		if p.Leave() {
			refuse(w, http.StatusServiceUnavailable, "relay draining")
			return
		}
	}
	// A dial was handed over, perhaps while the handler was leaving.
	if r.Context().Err() != nil {
		p.Fail()
		return
	}
	pr, err := n.engine.Callback(r.Context(), p.Token(), regID)
	if err != nil {
		// The dial ended meanwhile (cancelled, timed out): park again.
		refuseErr(w, err)
		return
	}
	n.upgrade(w, pr, actors.Server)
}

// clientAddr returns the address of the client behind r: the TCP peer, or,
// when the peer is a trusted proxy, the rightmost untrusted address of
// X-Forwarded-For (with port 0: a proxy does not pass the port on).
func (n *Node) clientAddr(r *http.Request) string {
	if len(n.cfg.TrustedProxies) == 0 {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !n.trusted(peer.Addr()) {
		return r.RemoteAddr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return r.RemoteAddr // a malformed chain is not believed
		}
		if !n.trusted(a) {
			return netip.AddrPortFrom(a.Unmap(), 0).String()
		}
	}
	return r.RemoteAddr
}

func (n *Node) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range n.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// capSendBuffer caps the kernel send buffer of a registration stream's
// socket at StreamSendBuffer. Without a cap, TCP autotuning lets a stream
// whose server stopped reading absorb megabytes (thousands of events)
// before a write blocks, so the per-event write deadline would never drop
// it. Only on servers the node runs itself (Serve, ListenAndServe): a
// Handler mounted elsewhere cannot reach its socket.
func (n *Node) capSendBuffer(r *http.Request) {
	c, _ := servedConn(r.Context())
	if tcp := tcpConn(c); tcp != nil {
		_ = tcp.SetWriteBuffer(n.cfg.StreamSendBuffer)
	}
}

// keepAliveConfig is the TCP keepalive of the relay's sockets: half-open
// peers of long-lived pairs are found by the kernel within about two
// minutes.
var keepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 4}

// Listen listens on the TCP address addr as net.Listen does, with the
// relay's keepalive set on each accepted socket by the accept itself. Serve
// on it then sets nothing more on a hijacked socket; on any other listener
// it sets the relay's keepalive on each socket it hijacks, four more
// setsockopt calls.
func Listen(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAliveConfig}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return ln, nil
	}
	return &keepAliveListener{tl}, nil
}

// keepAliveListener marks a listener whose accepted sockets already have
// keepAliveConfig.
type keepAliveListener struct{ *net.TCPListener }

// keepAliveConnKey is connKey's twin on servers whose listener is a
// keepAliveListener: its value is the request's net.Conn, and its presence
// says the socket's keepalive is set.
type keepAliveConnKey struct{}

// servedConn returns the net.Conn of a request served by one of the node's
// own servers (nil for a Handler mounted elsewhere), and whether its
// keepalive was set at accept.
func servedConn(ctx context.Context) (c net.Conn, keepAliveSet bool) {
	if c, ok := ctx.Value(keepAliveConnKey{}).(net.Conn); ok {
		return c, true
	}
	c, _ = ctx.Value(connKey{}).(net.Conn)
	return c, false
}

// keepAlive turns TCP keepalive on for a hijacked socket whose listener
// did not: half-open peers of long-lived pairs are then found by the
// kernel, whatever listener the node was given.
func keepAlive(c net.Conn) {
	if tcp := tcpConn(c); tcp != nil {
		_ = tcp.SetKeepAliveConfig(keepAliveConfig)
	}
}

// tcpConn returns the TCP socket under c, a raw or TLS conn, or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*prefixConn); ok {
		c = pc.Conn
	}
	tcp, _ := c.(*net.TCPConn)
	return tcp
}

// appendHeader appends one "key: value" header line.
func appendHeader(b []byte, key, value string) []byte {
	b = append(b, key...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// upgrade hijacks the request's connection, writes the 101 and offers the
// connection, with the bytes that came behind the request, to the pairing.
// The server's 101 names the client (Relay-Client-Name and
// Relay-Client-Addr, when known).
func (n *Node) upgrade(w http.ResponseWriter, p *actors.Pairing, side actors.Side) {
	bb := eventPool.Get()
	defer eventPool.Put(bb)
	if side == actors.Server {
		bb.B = wire.AppendUpgradeResponse(bb.B[:0], n.engine.NodeID(),
			wire.HeaderClientName, p.ClientName, wire.HeaderClientAddr, p.ClientAddr)
	} else {
		bb.B = wire.AppendUpgradeResponse(bb.B[:0], n.engine.NodeID())
	}
	n.handOver(w, p, side, bb.B, http.StatusSwitchingProtocols)
}

// handOver is the switch to raw bytes of both wires: it hijacks the
// request's connection, writes answer (the 101, or v0's 200) under
// UpgradeWriteTimeout, and offers the connection, with the bytes that
// came behind the request, to the pairing. status is what the node's
// counters record for the request.
func (n *Node) handOver(w http.ResponseWriter, p *actors.Pairing, side actors.Side, answer []byte, status int) {
	var conn net.Conn
	var head []byte
	if lw := leanOf(w); lw != nil {
		conn, head = lw.hijack()
	} else {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			p.Abort(side)
			refuse(w, http.StatusInternalServerError, "cannot switch protocols on this connection")
			return
		}
		if k := brw.Reader.Buffered(); k > 0 {
			head = make([]byte, k)
			_, _ = brw.Reader.Read(head)
		}
		// A connection the lean path handed over splices once what it
		// read first has been read again.
		conn = unwrapConn(c)
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.status = status
	}
	_ = conn.SetDeadline(time.Now().Add(n.cfg.UpgradeWriteTimeout))
	_, err := conn.Write(answer)
	_ = conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		p.Abort(side)
		return
	}
	p.Offer(side, conn, head)
	if sw, ok := w.(*statusWriter); !ok || !sw.keepAliveSet {
		// After the offer, off the dial's critical path: four
		// setsockopts. Safe on a conn the pair may already be copying or
		// closing.
		keepAlive(conn)
	}
}

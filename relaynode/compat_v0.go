package relaynode

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/wire"
)

// The v0 wire: the original clusterlink relay's routes, served beside the
// protocol's own when Config.CompatV0 is on.
const (
	// V0PathServer is the v0 registration route (any method).
	V0PathServer = "/serverconn"
	// V0PathClient is the v0 dial route (CONNECT).
	V0PathClient = "/clientconn"
	// V0PathCallback is the v0 callback route (CONNECT).
	V0PathCallback = "/servercallback"
	// V0MaxBody is the cap on a v0 request's JSON body, in bytes; a larger
	// one gets 413.
	V0MaxBody = 64 << 10
	// V0CallbackTimeout is the longest a v0 dial waits for its callback
	// before 504, as in the original; the engine's CallbackTimeout, when
	// shorter, ends it first.
	V0CallbackTimeout = 30 * time.Second
)

// v0Request is the body of every v0 request and the data of every v0
// event. Field order is the event's byte order.
type v0Request struct {
	Data     string `json:"Data"`
	ClientID string `json:"ClientID"`
	ServerID string `json:"ServerID"`
}

// v0Key is a v0 dial's match key: the pair of ids the client chose, as a
// pair, never a concatenation.
type v0Key struct {
	client, server string
}

// v0Dial is one v0 match in flight: a v0 client's dial, or a v1 client's
// dial to a v0 server. ready closes once token is known (or the dial
// failed, token zero).
type v0Dial struct {
	ready    chan struct{}
	token    wire.Token
	deadline time.Time // for dials made by v1 clients: when the entry is stale
}

// compatV0 is the node's v0 state. Its zero value is ready.
type compatV0 struct {
	mu    sync.Mutex
	regs  map[string]*actors.Registration // v0-held names
	dials map[v0Key]*v0Dial

	// Counters.
	callbacksOK             atomic.Int64
	callbacksForeign        atomic.Int64
	callbacksUnknown        atomic.Int64
	duplicates              atomic.Int64
	registrations, takeover atomic.Int64
}

// CompatV0Stats counts the v0 wire's traffic since the node started.
type CompatV0Stats struct {
	// Registrations counts v0 registrations accepted.
	Registrations int64 `json:"registrations"`
	// Takeovers counts v0 registrations ended by an authenticated v1
	// registration of their name.
	Takeovers int64 `json:"takeovers"`
	// DialsSpliced and DialsFailed count v0 dials answered 200 and
	// refused.
	DialsSpliced int64 `json:"dials_spliced"`
	DialsFailed  int64 `json:"dials_failed"`
	// Duplicates counts v0 dials refused 409 because their (ClientID,
	// ServerID) pair was already in flight.
	Duplicates int64 `json:"duplicates"`
	// Callbacks counts v0 callbacks answered 200.
	Callbacks int64 `json:"callbacks"`
	// CallbacksForeign counts v0 callbacks refused because their source IP
	// is not the registration's.
	CallbacksForeign int64 `json:"callbacks_foreign"`
	// CallbacksUnknown counts v0 callbacks refused 404: no such server or
	// no dial for the pair.
	CallbacksUnknown int64 `json:"callbacks_unknown"`
}

// CompatV0Stats returns the v0 wire's counters. All zero when CompatV0 is
// off.
func (n *Node) CompatV0Stats() CompatV0Stats {
	v := &n.v0
	var spliced, failed int64
	for o, c := range n.counters.v0DialCounts() {
		if o == outcomeSpliced {
			spliced += c
		} else {
			failed += c
		}
	}
	return CompatV0Stats{
		Registrations:    v.registrations.Load(),
		Takeovers:        v.takeover.Load(),
		DialsSpliced:     spliced,
		DialsFailed:      failed,
		Duplicates:       v.duplicates.Load(),
		Callbacks:        v.callbacksOK.Load(),
		CallbacksForeign: v.callbacksForeign.Load(),
		CallbacksUnknown: v.callbacksUnknown.Load(),
	}
}

// warnCompatV0 logs, once at start, what CompatV0 gives up.
func (n *Node) warnCompatV0() {
	if n.cfg.CompatV0 {
		n.log.Warn("compat-v0 on: v0 matching is unauthenticated beyond the source-IP check of callbacks; anyone who knows a ClientID and ServerID from the server's address can answer a v0 dial",
			slog.String("routes", V0PathServer+" "+V0PathClient+" "+V0PathCallback))
	}
}

// serveV0 serves a v0 route and reports true, or reports false for a
// request of the protocol's own. For a v1 registration of a name a v0
// registration holds, it ends the v0 registration first when the v1 one
// is authenticated, so that the v1 one takes the name over.
func (n *Node) serveV0(w *statusWriter, r *http.Request) bool {
	var route string
	switch r.URL.Path {
	case V0PathServer:
		route = "v0_serverconn"
	case V0PathClient:
		route = "v0_clientconn"
	case V0PathCallback:
		route = "v0_servercallback"
	default:
		return false
	}
	defer n.countV0(route, w)
	if n.draining.Load() && r.URL.Path != V0PathCallback {
		refuse(w, http.StatusServiceUnavailable, "relay draining")
		return true
	}
	if r.URL.Path != V0PathServer && r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		refuse(w, http.StatusMethodNotAllowed, "method not allowed")
		return true
	}
	req, ok := n.readV0(w, r, r.URL.Path != V0PathServer)
	if !ok {
		return true
	}
	switch r.URL.Path {
	case V0PathServer:
		n.serveV0Listen(w, r, req)
	case V0PathClient:
		n.serveV0Dial(w, r, req)
	default:
		n.serveV0Callback(w, r, req)
	}
	return true
}

// countV0 records one answered v0 request in the node's counters: dials in
// relay_dials_total and relay_v0_dials_total by outcome, refusals by route.
func (n *Node) countV0(route string, w *statusWriter) {
	if route == "v0_clientconn" {
		n.counters.dialV0(dialOutcome(w.status, http.StatusOK))
	}
	n.countRefusal(route, w)
}

// readV0 reads and checks a v0 body: at most V0MaxBody bytes (413), JSON
// (400), ServerID and, when needClient, ClientID valid names (400).
func (n *Node) readV0(w http.ResponseWriter, r *http.Request, needClient bool) (v0Request, bool) {
	rc := http.NewResponseController(w)
	if r.ContentLength > V0MaxBody {
		// Refused unread, as the protocol's own routes refuse bodies.
		_ = rc.SetReadDeadline(time.Unix(1, 0))
		refuse(w, http.StatusRequestEntityTooLarge, "body over 64 KiB")
		return v0Request{}, false
	}
	// A slow body gets as long as the headers did.
	_ = rc.SetReadDeadline(time.Now().Add(n.cfg.ReadHeaderTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, V0MaxBody+1))
	if err != nil {
		_ = rc.SetReadDeadline(time.Unix(1, 0))
		refuse(w, http.StatusBadRequest, "cannot read body")
		return v0Request{}, false
	}
	if len(body) > V0MaxBody {
		_ = rc.SetReadDeadline(time.Unix(1, 0))
		refuse(w, http.StatusRequestEntityTooLarge, "body over 64 KiB")
		return v0Request{}, false
	}
	_ = rc.SetReadDeadline(time.Time{})
	var req v0Request
	if err := json.Unmarshal(body, &req); err != nil {
		refuse(w, http.StatusBadRequest, "bad body")
		return v0Request{}, false
	}
	if wire.CheckName(req.ServerID) != nil {
		refuse(w, http.StatusBadRequest, "invalid ServerID")
		return v0Request{}, false
	}
	if needClient && wire.CheckName(req.ClientID) != nil {
		refuse(w, http.StatusBadRequest, "invalid ClientID")
		return v0Request{}, false
	}
	return req, true
}

// appendV0Event appends one v0 event: "event: connection", a "Data: " line
// (capital D) with the JSON of the pair, and a blank line. encoding/json
// escapes <, > and & as \u003c, \u003e and \u0026, as the original does.
func appendV0Event(b []byte, clientID, serverID string) ([]byte, error) {
	js, err := json.Marshal(v0Request{ClientID: clientID, ServerID: serverID})
	if err != nil {
		return b, err
	}
	b = append(b, "event: connection\nData: "...)
	b = append(b, js...)
	return append(b, "\n\n"...), nil
}

// serveV0Listen holds a v0 registration stream: a 200 event stream with
// one event per dial and nothing else (no ready event, no heartbeat, no
// drain event: a v0 listener dies on any other line). The registration is
// the engine's, unauthenticated, so a v1 registration of the name gets 409
// unless authenticated; a name the engine already holds is refused 409.
func (n *Node) serveV0Listen(w *statusWriter, r *http.Request, req v0Request) {
	name := req.ServerID
	addr := n.clientAddr(r)
	key := n.edge.key(addr)
	if rf := n.edge.admitRegistration(key); rf != nil {
		refuseErr(w, rf)
		return
	}
	defer n.edge.releaseRegistration(key)
	reg, err := n.engine.Register(r.Context(), actors.RegisterRequest{Name: name, ClientAddr: addr, Yields: true})
	if err != nil {
		n.log.Debug("v0 register refused", slog.String("name", name), slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		refuseErr(w, err)
		return
	}
	defer reg.Close()
	n.v0.addReg(reg)
	defer n.v0.dropReg(reg)
	n.v0.registrations.Add(1)
	n.edge.nameUp(name)
	defer n.edge.nameDown(name)
	n.capSendBuffer(r)

	var v1Keys []v0Key // entries this stream made for v1 clients' dials
	defer func() { n.v0.dropKeys(v1Keys) }()
	n.holdStream(w, r, reg, name, streamWire{
		// No ready event, heartbeat or drain event: on drain the stream
		// stays until the pending dials settle, then ends.
		event: func(b []byte, ev *actors.StreamEvent) ([]byte, error) {
			if ev.Type != wire.EventConnect {
				return b, nil // v0 has no other event
			}
			clientID := ev.Connect.Client
			if !n.v0.isV0Dial(v0Key{clientID, name}, ev.Connect.Token) {
				// A v1 client's dial: the v0 server answers it by a
				// (ClientID, ServerID) pair, so give it one.
				tok, err := wire.ParseToken(ev.Connect.Token)
				if err != nil {
					return b, err
				}
				clientID = "v1-" + ev.Connect.Token
				k := v0Key{clientID, name}
				d := &v0Dial{ready: make(chan struct{}), token: tok, deadline: time.UnixMilli(ev.Connect.DeadlineUnixMilli)}
				close(d.ready)
				v1Keys = n.v0.addV1(k, d, v1Keys)
			}
			return appendV0Event(b, clientID, name)
		},
		dropped: "v0 stream dropped",
	})
}

// serveV0Dial holds a v0 client's dial until its callback, a refusal or
// the deadline; only a match hijacks the connection and answers
// "HTTP/1.1 200 OK".
func (n *Node) serveV0Dial(w *statusWriter, r *http.Request, req v0Request) {
	name := req.ServerID
	if err := n.authorizeDial(r, name); err != nil {
		refuseAuth(w, err)
		return
	}
	addr := n.clientAddr(r)
	key := n.edge.key(addr)
	if rf := n.edge.admitDial(key, name, n.engine); rf != nil {
		if rf.Status == http.StatusNotFound {
			refuse(w, http.StatusNotFound, "unknown server")
			return
		}
		refuseErr(w, rf)
		return
	}
	defer n.edge.release(key)
	k := v0Key{req.ClientID, name}
	d := &v0Dial{ready: make(chan struct{})}
	if !n.v0.reserve(k, d) {
		n.v0.duplicates.Add(1)
		refuse(w, http.StatusConflict, "pair already in flight")
		return
	}
	defer n.v0.drop(k, d)
	pd, err := n.engine.Dial(r.Context(), name, req.ClientID, addr)
	if err != nil {
		close(d.ready)
		n.log.Debug("v0 dial refused", slog.String("name", name), slog.Any("err", err))
		var rf *actors.Refusal
		if errors.As(err, &rf) && rf.Status == http.StatusNotFound {
			n.edge.unknownName(name)
			refuse(w, http.StatusNotFound, "unknown server")
			return
		}
		refuseErr(w, err)
		return
	}
	d.token = pd.Token
	close(d.ready)
	ctx := r.Context()
	if n.engine.Config().CallbackTimeout > V0CallbackTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, V0CallbackTimeout)
		defer cancel()
	}
	o := pd.Wait(ctx)
	if r.Context().Err() != nil {
		if o.Pairing != nil {
			o.Pairing.Abort(actors.Client)
		}
		w.status = statusClientGone
		return
	}
	if o.Err != nil {
		if ctx.Err() != nil { // our own 30s bound
			refuse(w, http.StatusGatewayTimeout, "callback deadline passed")
			return
		}
		refuseErr(w, o.Err)
		return
	}
	n.spliceV0(w, o.Pairing, actors.Client)
}

// serveV0Callback takes a v0 server's callback for (ClientID, ServerID):
// only from the source IP of ServerID's v0 registration, and only for a
// pair in flight.
func (n *Node) serveV0Callback(w *statusWriter, r *http.Request, req v0Request) {
	reg := n.v0.reg(req.ServerID)
	if reg == nil {
		n.v0.callbacksUnknown.Add(1)
		refuse(w, http.StatusNotFound, "unknown server")
		return
	}
	if !sameIP(n.clientAddr(r), reg.ClientAddr) {
		n.v0.callbacksForeign.Add(1)
		n.log.Warn("v0 callback from another address refused", slog.String("server", req.ServerID),
			slog.String("remote", n.clientAddr(r)))
		refuse(w, http.StatusForbidden, "callback from another address")
		return
	}
	d := n.v0.claim(v0Key{req.ClientID, req.ServerID})
	if d == nil {
		n.v0.callbacksUnknown.Add(1)
		refuse(w, http.StatusNotFound, "no dial for this pair")
		return
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-d.ready:
	case <-t.C:
		refuse(w, http.StatusServiceUnavailable, "relay busy")
		return
	case <-r.Context().Done():
		return
	}
	if d.token.IsZero() {
		n.v0.callbacksUnknown.Add(1)
		refuse(w, http.StatusNotFound, "no dial for this pair")
		return
	}
	p, err := n.engine.Callback(r.Context(), d.token, reg.ID)
	if err != nil {
		n.log.Debug("v0 callback refused", slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		refuseErr(w, err)
		return
	}
	n.v0.callbacksOK.Add(1)
	n.spliceV0(w, p, actors.Server)
}

// sameIP reports whether two host:port addresses have the same IP.
func sameIP(a, b string) bool {
	ia := ipOf(a)
	return ia.IsValid() && ia == ipOf(b)
}

// spliceV0 answers "HTTP/1.1 200 OK" and hands the connection over to
// the pairing, as a v1 101 does: the engine's splice path, limits and
// drain from here on.
func (n *Node) spliceV0(w *statusWriter, p *actors.Pairing, side actors.Side) {
	answer := make([]byte, 0, 128)
	answer = append(answer, "HTTP/1.1 200 OK\r\n"...)
	answer = appendHeader(answer, wire.HeaderNode, n.engine.NodeID())
	answer = append(answer, "\r\n"...)
	n.handOver(w, p, side, answer, http.StatusOK)
}

// v0TakenOver records that an authenticated v1 registration of name
// took it from the v0 registration held, which the engine has ended in
// the same step (RegisterRequest.Yields). held is the v0 registration
// that held name before the register, or nil.
func (n *Node) v0TakenOver(name string, held *actors.Registration) {
	if held == nil {
		return
	}
	n.log.Info("v0 registration taken over by an authenticated registration", slog.String("name", name))
	n.v0.takeover.Add(1)
}

func (v *compatV0) addReg(reg *actors.Registration) {
	v.mu.Lock()
	if v.regs == nil {
		v.regs = make(map[string]*actors.Registration)
	}
	v.regs[reg.Name] = reg
	v.mu.Unlock()
}

func (v *compatV0) dropReg(reg *actors.Registration) {
	v.mu.Lock()
	if v.regs[reg.Name] == reg {
		delete(v.regs, reg.Name)
	}
	v.mu.Unlock()
}

func (v *compatV0) reg(name string) *actors.Registration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.regs[name]
}

// reserve records d as the dial of k, or reports false if k is in flight.
func (v *compatV0) reserve(k v0Key, d *v0Dial) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dials == nil {
		v.dials = make(map[v0Key]*v0Dial)
	}
	if old := v.dials[k]; old != nil && (old.deadline.IsZero() || time.Now().Before(old.deadline)) {
		return false
	}
	v.dials[k] = d
	return true
}

// drop forgets k if d still holds it.
func (v *compatV0) drop(k v0Key, d *v0Dial) {
	v.mu.Lock()
	if v.dials[k] == d {
		delete(v.dials, k)
	}
	v.mu.Unlock()
}

// isV0Dial reports whether the connect event of token is the v0 dial
// in flight under k, not a v1 client's dial whose client name happens to
// be that ClientID. The dial's token is known once engine.Dial returns,
// about when its event is queued: it waits for that, bounded.
func (v *compatV0) isV0Dial(k v0Key, token string) bool {
	v.mu.Lock()
	d := v.dials[k]
	v.mu.Unlock()
	if d == nil || !d.deadline.IsZero() {
		return false
	}
	select {
	case <-d.ready:
	default:
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-d.ready:
		case <-t.C:
			return false
		}
	}
	return !d.token.IsZero() && d.token.String() == token
}

// claim takes k's dial for a callback: a pair is answered once, and is
// free for a new dial from then on, before its client sees the 200.
func (v *compatV0) claim(k v0Key) *v0Dial {
	v.mu.Lock()
	defer v.mu.Unlock()
	d := v.dials[k]
	delete(v.dials, k)
	return d
}

// addV1 records a v1 client's dial to a v0 server under k, sweeps the
// stream's stale entries, and returns the stream's keys.
func (v *compatV0) addV1(k v0Key, d *v0Dial, keys []v0Key) []v0Key {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dials == nil {
		v.dials = make(map[v0Key]*v0Dial)
	}
	live := keys[:0]
	for _, old := range keys {
		if e := v.dials[old]; e != nil && now.Before(e.deadline) {
			live = append(live, old)
		} else if e != nil {
			delete(v.dials, old)
		}
	}
	v.dials[k] = d
	return append(live, k)
}

// dropKeys forgets the v1 entries of a stream that ended.
func (v *compatV0) dropKeys(keys []v0Key) {
	v.mu.Lock()
	for _, k := range keys {
		if d := v.dials[k]; d != nil && !d.deadline.IsZero() {
			delete(v.dials, k)
		}
	}
	v.mu.Unlock()
}

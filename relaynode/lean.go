package relaynode

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// The lean path. On a plain-TCP server the node runs itself (Serve,
// ListenAndServe), the hot routes (dial, accept, park) are read and
// answered by the node, without net/http's per-connection and per-request
// work (bufio readers and writers, which a hijack never gives back, a
// context tree, a response writer): wire.ParseRequestHead takes a request
// head only in the one plain form the protocol's clients send, and every
// other connection (a listen stream, any other route, any head it does
// not take) is handed, with the bytes read so far, to the http.Server, so
// that net/http answers everything the lean path does not take exactly as
// before. Both paths end in ServeHTTP: routing, limits, refusals and
// counters are the same code, and a Node mounted on another server is an
// http.Handler as before.

// leanServer is the lean path of one Serve call.
type leanServer struct {
	n         *Node
	ln        net.Listener // the gated listener
	keepAlive bool         // ln's accepts set the relay's keepalive

	handed chan net.Conn  // connections for the http.Server
	idle   chan *leanConn // connections for a worker that waits for one
	done   chan struct{}  // closed by close
	once   sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]*leanConn // live lean connections
	closed bool
	err    error // the accept loop's error, once done is closed
}

func newLeanServer(n *Node, ln net.Listener, keepAlive bool) *leanServer {
	ls := &leanServer{
		n: n, ln: ln, keepAlive: keepAlive,
		handed: make(chan net.Conn),
		idle:   make(chan *leanConn),
		done:   make(chan struct{}),
		conns:  make(map[net.Conn]*leanConn),
	}
	go ls.acceptLoop()
	return ls
}

// Accept returns the next connection handed to the http.Server: it is the
// http.Server's listener.
func (ls *leanServer) Accept() (net.Conn, error) {
	select {
	case c := <-ls.handed:
		return c, nil
	case <-ls.done:
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if ls.err != nil {
			return nil, ls.err
		}
		return nil, net.ErrClosed
	}
}

// Addr is the listener's address.
func (ls *leanServer) Addr() net.Addr { return ls.ln.Addr() }

// Close closes the listener, and every lean connection not in a handler
// (reading a head, or idle between requests): what http.Server's Close
// and Shutdown do to their own. A handler's connection ends when its
// handler does, the node's Close ending every handler.
func (ls *leanServer) Close() error {
	ls.stop(nil)
	return nil
}

// stop ends the lean server once, with err as the accept error to report.
func (ls *leanServer) stop(err error) {
	ls.once.Do(func() {
		ls.mu.Lock()
		ls.closed = true
		ls.err = err
		var idle []net.Conn
		for c, lc := range ls.conns {
			if !lc.active {
				idle = append(idle, c)
			}
		}
		ls.mu.Unlock()
		ls.ln.Close()
		for _, c := range idle {
			c.Close()
		}
		close(ls.done)
	})
}

// acceptLoop accepts until the listener fails, backing off on temporary
// errors as http.Server does.
func (ls *leanServer) acceptLoop() {
	var delay time.Duration
	for {
		c, err := ls.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, net.ErrClosed) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-ls.done:
				}
			}
			ls.stop(err)
			return
		}
		delay = 0
		lc := &leanConn{ls: ls, c: c}
		if !ls.track(c, lc) {
			c.Close()
			ls.n.gate.state(c, http.StateClosed)
			continue
		}
		select {
		case ls.idle <- lc:
		default:
			ls.n.leanWorkers.Add(1)
			go ls.work(lc)
		}
	}
}

// workerIdle is how long a worker whose connection ended waits for the
// next one before it exits.
const workerIdle = time.Second

// work serves lc, then the connections the accept loop hands it, until it
// has waited workerIdle for one or the server is closed. A worker keeps
// the stack its first connections grew, so the next one does not grow it
// again frame by frame.
func (ls *leanServer) work(lc *leanConn) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		lc.serve()
		t.Reset(workerIdle)
		select {
		case lc = <-ls.idle:
		case <-t.C:
			return
		case <-ls.done:
			return
		}
	}
}

// track adds a lean connection, unless the server is closed.
func (ls *leanServer) track(c net.Conn, lc *leanConn) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return false
	}
	ls.conns[c] = lc
	ls.n.connState(c, http.StateNew)
	return true
}

// setActive marks c as in a handler, or out of it; it reports false when
// c leaves a handler on a closed server, and must close.
func (ls *leanServer) setActive(lc *leanConn, active bool) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	lc.active = active
	return active || !ls.closed
}

// untrack forgets c, which is closed, hijacked or handed over (st).
func (ls *leanServer) untrack(c net.Conn, st http.ConnState) {
	ls.mu.Lock()
	delete(ls.conns, c)
	ls.mu.Unlock()
	ls.n.connState(c, st)
	if st != http.StateNew {
		ls.n.gate.state(c, st)
	}
}

// headPool holds the buffers request heads are read into.
var headPool sync.Pool

// leanConn is one connection on the lean path.
type leanConn struct {
	ls     *leanServer
	c      net.Conn
	active bool   // in a handler; guarded by ls.mu
	remote string // c's remote address, as http.Request.RemoteAddr
	// carry holds bytes read behind the last request: the start of the
	// next one, or, on a hijack, the first bytes of the stream.
	carry []byte
}

// hotLine reports whether line, a request line, may be one of the lean
// path's: POST to the dial, accept or park route over HTTP/1.1.
func hotLine(line []byte) bool {
	// bytes, not a string of line: a request line is longer than the
	// 32 bytes a string conversion may keep on the stack.
	if !bytes.HasPrefix(line, hotMethod) || !bytes.HasSuffix(line, hotProto) {
		return false
	}
	p := line[len(hotMethod):]
	return bytes.HasPrefix(p, hotDial) || bytes.HasPrefix(p, hotAccept) || bytes.HasPrefix(p, hotPark)
}

// The parts of a request line hotLine looks for.
var (
	hotMethod, hotProto         = []byte("POST "), []byte(" HTTP/1.1")
	hotDial, hotAccept, hotPark = []byte(wire.PathDial), []byte(wire.PathAccept), []byte(wire.PathPark)
	crlf                        = []byte("\r\n")
)

// hotPrefix starts every request line hotLine takes.
const hotPrefix = "POST /v1/"

// hotStart reports whether b, the first bytes of a request, may begin a
// request line hotLine takes.
func hotStart(b []byte) bool {
	k := min(len(b), len(hotPrefix))
	return string(b[:k]) == hotPrefix[:k]
}

// serve reads and answers requests on the connection until it is
// hijacked, handed to the http.Server, or closed.
func (lc *leanConn) serve() {
	n := lc.ls.n
	c := lc.c
	first := true
	for {
		head, ok := lc.readHead(first)
		if !ok {
			return
		}
		first = false
		if !lc.answer(head) {
			return
		}
		if !lc.ls.setActive(lc, false) {
			lc.close()
			return
		}
		// Idle between requests: joins the gate's count again, as on
		// net/http's connections.
		n.gate.state(c, http.StateIdle)
	}
}

// close closes the connection for good.
func (lc *leanConn) close() {
	lc.c.Close()
	lc.ls.untrack(lc.c, http.StateClosed)
}

// readHead reads one request head within ReadHeaderTimeout (after
// IdleTimeout for its first byte, between requests) and returns it, or
// reports false when the connection is done with here: closed (a
// timeout or an end, as net/http closes them, with no answer) or handed
// to the http.Server (anything not plainly a hot route).
func (lc *leanConn) readHead(first bool) (string, bool) {
	n := lc.ls.n
	c := lc.c
	bp, _ := headPool.Get().(*[]byte)
	size := n.cfg.MaxHeaderBytes + 4096 // net/http's read limit for a head
	if bp == nil || cap(*bp) < size {
		b := make([]byte, size)
		bp = &b
	}
	buf := (*bp)[:size]
	defer headPool.Put(bp)
	have := copy(buf, lc.carry)
	lc.carry = nil
	if first || have > 0 {
		_ = c.SetReadDeadline(time.Now().Add(n.cfg.ReadHeaderTimeout))
	} else {
		_ = c.SetReadDeadline(time.Now().Add(leanIdleTimeout))
	}
	lineSeen := false
	// scanned is what the last round read up to: no bare LF, and no line
	// end (before lineSeen) or head end (after) in buf[:scanned], so each
	// search starts where one could still end, never from 0 again.
	scanned := 0
	for {
		if bareLF(buf[:have], scanned) {
			// A line ended by LF alone: net/http reads it, the lean path
			// does not.
			lc.hand(buf[:have])
			return "", false
		}
		from := scanned
		scanned = have
		if !lineSeen {
			if !hotStart(buf[:have]) {
				// Not a hot route's request (another route, another
				// protocol: a TLS hello): net/http answers it at once.
				lc.hand(buf[:have])
				return "", false
			}
			start := max(from-1, 0)
			if i := bytes.Index(buf[start:have], crlf); i >= 0 {
				lineSeen = true
				if !hotLine(buf[:start+i]) {
					lc.hand(buf[:have])
					return "", false
				}
			}
		}
		if lineSeen {
			start := max(from-3, 0)
			if end := wire.EndOfHead(buf[start:have]); end >= 0 {
				end += start
				head := string(buf[:end])
				if have > end {
					lc.carry = append([]byte(nil), buf[end:have]...)
				}
				_ = c.SetReadDeadline(time.Time{})
				return head, true
			}
		}
		if have == len(buf) {
			lc.hand(buf[:have]) // too big: net/http answers 431
			return "", false
		}
		k, err := c.Read(buf[have:])
		if k > 0 && have == 0 && !first {
			// The next request began: its head has ReadHeaderTimeout.
			_ = c.SetReadDeadline(time.Now().Add(n.cfg.ReadHeaderTimeout))
		}
		have += k
		if err != nil {
			var ne net.Error
			if have > 0 && !(errors.As(err, &ne) && ne.Timeout()) {
				// A head cut short: net/http answers it (400) as before.
				lc.hand(buf[:have])
				return "", false
			}
			lc.close()
			return "", false
		}
	}
}

// leanIdleTimeout is how long a lean connection waits for its next
// request: Serve's http.Server IdleTimeout.
const leanIdleTimeout = 60 * time.Second

// bareLF reports whether b, from index from on, has an LF not preceded by
// CR.
func bareLF(b []byte, from int) bool {
	for i := from; i < len(b); i++ {
		if b[i] == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// hand gives the connection, with the bytes read from it so far, to the
// http.Server, which reads and answers it from the start.
func (lc *leanConn) hand(read []byte) {
	c := lc.c
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: append([]byte(nil), read...)}
	// The http.Server counts it anew (StateNew); the gate's entry stays,
	// found again through the prefixConn, since its head is unfinished.
	lc.ls.mu.Lock()
	delete(lc.ls.conns, c)
	lc.ls.mu.Unlock()
	lc.ls.n.connState(c, http.StateHijacked)
	select {
	case lc.ls.handed <- pc:
	case <-lc.ls.done:
		c.Close()
		lc.ls.n.gate.state(c, http.StateClosed)
	}
}

// leanRequest is what one request on the lean path needs, pooled: its
// parsed head (whose header map and values are reused), its URL and its
// writer. Nothing holds them once ServeHTTP has returned.
type leanRequest struct {
	head wire.RequestHead
	url  url.URL
	w    leanWriter
}

var leanRequests = sync.Pool{New: func() any { return new(leanRequest) }}

// answer serves one parsed head through ServeHTTP and writes its answer.
// It reports whether the connection stays for another request.
func (lc *leanConn) answer(text string) bool {
	n := lc.ls.n
	c := lc.c
	lr := leanRequests.Get().(*leanRequest)
	defer func() {
		lr.head.Reset()
		body := lr.w.body[:0]
		lr.w = leanWriter{body: body}
		lr.url = url.URL{}
		leanRequests.Put(lr)
	}()
	head := &lr.head
	if !head.Parse(text) {
		lc.hand(append([]byte(text), lc.carry...))
		return false
	}
	lc.ls.setActive(lc, true)
	n.gate.state(c, http.StateActive) // headers finished
	if lc.remote == "" {
		lc.remote = c.RemoteAddr().String()
	}
	w := &lr.w
	w.lc = lc
	// A dial or a park waits: a client going away must cancel it, as
	// net/http's background read does. A callback does not wait, and its
	// context is never cancelled.
	waits := !strings.HasPrefix(head.Target, wire.PathAccept)
	ctx := context.Background()
	if waits {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		w.cancel = cancel
	}
	lr.url.Path = head.Target
	r := (&http.Request{
		Method: head.Method, URL: &lr.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: head.Header, Host: head.Host, RemoteAddr: lc.remote, RequestURI: head.Target,
		Close: head.Close, Body: http.NoBody,
	}).WithContext(ctx)
	if waits {
		w.watch()
	}
	n.ServeHTTP(w, r)
	if w.hijacked {
		return false
	}
	w.unwatch()
	gone := ctx.Err() != nil
	if err := w.finish(); err != nil || gone || head.Close || w.close {
		lc.close()
		return false
	}
	return true
}

// leanWriter is the http.ResponseWriter of a request on the lean path.
// A refusal is buffered and written, with its length, when the handler
// returns; a switch to raw bytes takes the connection (hijack).
type leanWriter struct {
	lc     *leanConn
	cancel context.CancelFunc
	header http.Header
	status int
	body   []byte

	hijacked bool
	close    bool // the answer asked to close the connection

	// The watch: one read of the connection while the handler waits, to
	// see the client go. A byte it reads is kept (bytes sent behind the
	// request).
	watching bool
	watched  chan struct{}
	got      [1]byte
	gotN     int
}

// Header returns the answer's header map.
func (w *leanWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 4)
	}
	return w.header
}

// WriteHeader records the status; the first one counts.
func (w *leanWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

// Write buffers body bytes of the answer.
func (w *leanWriter) Write(b []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// watch starts the read that cancels the request when the client goes (a
// timeout is unwatch stopping it, with a past deadline).
func (w *leanWriter) watch() {
	w.watching = true
	w.watched = make(chan struct{})
	go func() {
		defer close(w.watched)
		k, err := w.lc.c.Read(w.got[:])
		w.gotN = k
		if k == 0 && err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				w.cancel()
			}
		}
	}()
}

// unwatch stops the watch and keeps what it read.
func (w *leanWriter) unwatch() {
	if !w.watching {
		return
	}
	w.watching = false
	c := w.lc.c
	_ = c.SetReadDeadline(time.Unix(1, 0))
	<-w.watched
	_ = c.SetReadDeadline(time.Time{})
	if w.gotN > 0 {
		w.lc.carry = append(w.lc.carry, w.got[0])
	}
}

// hijack takes the connection for a switch to raw bytes, with the bytes
// that came behind the request.
func (w *leanWriter) hijack() (net.Conn, []byte) {
	w.unwatch()
	w.hijacked = true
	lc := w.lc
	head := lc.carry
	lc.carry = nil
	lc.ls.untrack(lc.c, http.StateHijacked)
	return lc.c, head
}

// finish writes the answer, as net/http would have: the status line,
// Relay-Node (which ServeHTTP sets on net/http's path), the headers, Date
// and Content-Length (none for 204), then the body.
func (w *leanWriter) finish() error {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	h := w.header
	w.close = headerHasToken(h, "Connection", "close")
	bb := eventPool.Get()
	defer eventPool.Put(bb)
	b := append(bb.B[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	b = appendHeader(b, wire.HeaderNode, w.lc.ls.n.engine.NodeID())
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = appendHeader(b, k, v)
		}
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\n"...)
	if status != http.StatusNoContent && status != http.StatusNotModified && status >= 200 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(w.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, w.body...)
	c := w.lc.c
	_ = c.SetWriteDeadline(time.Now().Add(w.lc.ls.n.cfg.UpgradeWriteTimeout))
	_, err := c.Write(b)
	_ = c.SetWriteDeadline(time.Time{})
	bb.B = b // the pool keeps what it grew to
	return err
}

// leanOf returns the lean writer under w, or nil.
func leanOf(w http.ResponseWriter) *leanWriter {
	if sw, ok := w.(*statusWriter); ok {
		w = sw.ResponseWriter
	}
	lw, _ := w.(*leanWriter)
	return lw
}

// prefixConn is a connection handed to the http.Server with the bytes the
// lean path read from it first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// Read returns the prefix first, then reads the connection.
func (pc *prefixConn) Read(b []byte) (int, error) {
	if len(pc.prefix) > 0 {
		k := copy(b, pc.prefix)
		pc.prefix = pc.prefix[k:]
		return k, nil
	}
	return pc.Conn.Read(b)
}

// unwrapConn returns the socket under a prefixConn whose prefix is all
// read (nothing is lost reading the socket itself), or c.
func unwrapConn(c net.Conn) net.Conn {
	if pc, ok := c.(*prefixConn); ok && len(pc.prefix) == 0 {
		return pc.Conn
	}
	return c
}

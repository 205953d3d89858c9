package relaynode_test

// Hostile-input checks of the design's matrix (DESIGN.md §6, §7): S6 odd
// names, S7 malformed requests, D1 slowloris, D2 slow body, D3 a
// registration flood from one address, D4 dials to a server that never
// calls back, D5 a listener that never reads its stream, D6 idle pairs.
// Each is asserted, bounded in count and time, runs on loopback only,
// awaits every goroutine it starts, and reports its figures with t.Logf:
// run with -v to see them.
//
// Sizes are scaled down by default, for the race detector in CI:
//
//	go test -race -shuffle=on -count=1 -run 'S6|S7|D[1-6]' -v ./relaynode/
//
// The design's full sizes (1,000 malformed requests, 200 slowloris
// connections, 5,000 registrations, 5,000 dials, 2,000 idle pairs):
//
//	go test ./relaynode -run 'S6|S7|D[1-6]' -hostile.full -v

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

var hostileFull = flag.Bool("hostile.full", false, "run hostile-input checks at full size")

// hostileSize returns full under -hostile.full (without -short), scaled
// otherwise.
func hostileSize(full, scaled int) int {
	if *hostileFull && !testing.Short() {
		return full
	}
	return scaled
}

// Request headers that ask for the relay's raw protocol.
const hostileUpgrade = "Connection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol

// hostileReq returns a request with no body: the request line, a Host,
// Content-Length: 0, then each of headers as a line.
func hostileReq(method, path string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// hostileAnswer is the relay's answer to one raw request.
type hostileAnswer struct {
	status int           // 0: no answer
	reason string        // the refusal's text
	took   time.Duration // from the request written to the answer read
	err    error         // why there is no answer
}

func (a hostileAnswer) String() string {
	if a.status == 0 {
		return fmt.Sprintf("no answer (%v)", a.err)
	}
	return fmt.Sprintf("%d %q", a.status, a.reason)
}

// hostileConn dials addr within bound, and gives the connection a
// deadline bound away.
func hostileConn(addr string, bound time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(bound))
	return c, nil
}

// hostileDo sends raw on a new connection to addr and reads one answer,
// within bound. The connection is closed when it returns.
func hostileDo(addr, raw string, bound time.Duration) hostileAnswer {
	c, err := hostileConn(addr, bound)
	if err != nil {
		return hostileAnswer{err: err}
	}
	defer c.Close()
	_, werr := io.WriteString(c, raw) // the answer may be there even so
	a := hostileRead(bufio.NewReader(c), time.Now())
	if a.status == 0 && werr != nil {
		a.err = werr
	}
	return a
}

// hostileRead reads one answer from br. A refusal's text is read; a 200
// event stream's body is left alone.
func hostileRead(br *bufio.Reader, start time.Time) hostileAnswer {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return hostileAnswer{err: err, took: time.Since(start)}
	}
	a := hostileAnswer{status: resp.StatusCode, took: time.Since(start)}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxReasonLen))
		a.reason = strings.TrimSpace(string(b))
	}
	return a
}

// hostileStream is a registration made by hand on a raw connection.
type hostileStream struct {
	c     net.Conn
	sse   *wire.Reader
	regID string
}

// hostileListen registers name on the relay at addr over a connection made
// by d and reads the ready event, within bound. On a refusal the stream is
// nil and the answer says why.
func hostileListen(d *net.Dialer, addr, name string, bound time.Duration) (*hostileStream, hostileAnswer) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, hostileAnswer{err: err}
	}
	_ = c.SetDeadline(time.Now().Add(bound))
	if _, err := io.WriteString(c, hostileReq("POST", wire.PathListen+name)); err != nil {
		c.Close()
		return nil, hostileAnswer{err: err}
	}
	start := time.Now()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, hostileAnswer{err: err}
	}
	a := hostileAnswer{status: resp.StatusCode, took: time.Since(start)}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxReasonLen))
		a.reason = strings.TrimSpace(string(b))
		c.Close()
		return nil, a
	}
	sse := wire.NewReader(resp.Body, 0, 0)
	ev, err := sse.Next()
	if err != nil || ev.Type != wire.EventReady {
		c.Close()
		return nil, hostileAnswer{err: fmt.Errorf("ready event: %+v, %v", ev, err)}
	}
	ready, err := wire.ParseReady(ev.Data)
	if err != nil {
		c.Close()
		return nil, hostileAnswer{err: err}
	}
	_ = c.SetDeadline(time.Time{})
	return &hostileStream{c: c, sse: sse, regID: ready.Registration}, a
}

// hostileDial dials name on the relay at addr by hand and returns the
// spliced connection after the 101, within bound; otherwise the answer.
func hostileDial(addr, name string, bound time.Duration) (net.Conn, hostileAnswer) {
	return hostileUpgradeConn(addr, hostileReq("POST", wire.PathDial+name, hostileUpgrade), bound)
}

// hostileCallback answers a connect event by hand: a new connection, the
// accept request with the registration id, the 101.
func hostileCallback(addr string, ce wire.ConnectEvent, regID string, bound time.Duration) (net.Conn, hostileAnswer) {
	return hostileUpgradeConn(addr, hostileReq("POST", ce.Callback, hostileUpgrade, wire.HeaderRegistration+": "+regID), bound)
}

func hostileUpgradeConn(addr, raw string, bound time.Duration) (net.Conn, hostileAnswer) {
	c, err := hostileConn(addr, bound)
	if err != nil {
		return nil, hostileAnswer{err: err}
	}
	if _, err := io.WriteString(c, raw); err != nil {
		c.Close()
		return nil, hostileAnswer{err: err}
	}
	br := bufio.NewReader(c)
	a := hostileRead(br, time.Now())
	if a.status != http.StatusSwitchingProtocols {
		c.Close()
		return nil, a
	}
	if br.Buffered() > 0 { // idle peers: nothing may follow the 101 yet
		c.Close()
		return nil, hostileAnswer{err: fmt.Errorf("%d bytes behind the 101", br.Buffered())}
	}
	_ = c.SetDeadline(time.Time{})
	return c, a
}

// hostileSink is a registration made by hand that counts its connect
// events and, with a handler, answers each with a raw callback and passes
// the server side of the pair to the handler. Its goroutines end, and are
// awaited, in the test's cleanup.
type hostileSink struct {
	st     *hostileStream
	events atomic.Int64 // connect events read
	failed atomic.Int64 // callbacks refused
	wg     sync.WaitGroup
}

func hostileServeSink(t testing.TB, addr, name string, handle func(c net.Conn, since time.Time)) *hostileSink {
	t.Helper()
	st, a := hostileListen(&net.Dialer{}, addr, name, 5*time.Second)
	if st == nil {
		t.Fatalf("listen %q: %v", name, a)
	}
	s := &hostileSink{st: st}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			ev, err := st.sse.Next()
			if err != nil {
				return
			}
			if ev.Type != wire.EventConnect {
				continue
			}
			s.events.Add(1)
			if handle == nil {
				continue
			}
			ce, err := wire.ParseConnect(ev.Data)
			if err != nil {
				s.failed.Add(1)
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c, _ := hostileCallback(addr, ce, st.regID, 5*time.Second)
				if c == nil {
					s.failed.Add(1)
					return
				}
				handle(c, time.Now())
			}()
		}
	}()
	t.Cleanup(func() {
		st.c.Close()
		s.wg.Wait()
	})
	return s
}

// hostileEcho serves name on the relay with the endpoints library and
// echoes every connection, until the test's cleanup, which closes the
// listener and its connections and awaits its goroutines.
func hostileEcho(t testing.TB, relayURL, name string) {
	t.Helper()
	ln, err := endpoints.ListenRelay("tcp", name, relayURL)
	if err != nil {
		t.Fatalf("listen %q: %v", name, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// hostilePing dials name through the relay at addr, echoes one byte and
// closes: one healthy dial. It returns the time it took.
func hostilePing(addr, name string) (time.Duration, error) {
	start := time.Now()
	c, err := endpoints.DialTCP("tcp", name, addr, "probe", endpoints.WithDialTimeout(5*time.Second))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	if _, err := c.Write([]byte{'p'}); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// hostilePings makes n sequential healthy dials, pausing gap between them,
// and returns their times and the first error.
func hostilePings(addr, name string, n int, gap time.Duration) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		d, err := hostilePing(addr, name)
		if err != nil {
			return ds, err
		}
		ds = append(ds, d)
		time.Sleep(gap)
	}
	return ds, nil
}

// hostileQuantile returns the q quantile (0 < q <= 1) of ds, nearest rank.
func hostileQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// hostileMem is the heap in use and the goroutine stacks, after two GCs.
type hostileMem struct{ heap, stack uint64 }

func hostileReadMem() hostileMem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return hostileMem{heap: m.HeapAlloc, stack: m.StackInuse}
}

func (m hostileMem) total() uint64 { return m.heap + m.stack }

// hostileMiB is the signed difference b-a in MiB.
func hostileMiB(a, b uint64) float64 { return (float64(b) - float64(a)) / (1 << 20) }

// hostileFDs counts this process's open fds, of every kind.
func hostileFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// hostileStatusName returns the relay's status of name, if registered.
func hostileStatusName(t testing.TB, n *relaynode.Node, name string) (relaynode.NameStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, ns := range st.Names {
		if ns.Name == name {
			return ns, true
		}
	}
	return relaynode.NameStatus{}, false
}

// hostileRegistrations returns the relay's number of live registrations.
func hostileRegistrations(t testing.TB, n *relaynode.Node) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st.Registrations
}

// hostileTally counts answers by "status reason", safe for concurrent use.
type hostileTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *hostileTally) add(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = make(map[string]int)
	}
	h.n[key]++
}

func (h *hostileTally) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.n))
	for k := range h.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, h.n[k])
	}
	return b.String()
}

// TestS6OddNames checks odd names: too long, control characters, path
// syntax and unicode are refused 400 (or 431 when the request line is past
// the header cap), and names that look alike never reach each other: each
// dial reaches only its own name's server, by exactly one connect event.
func TestS6OddNames(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{DialRate: -1})
	const bound = 5 * time.Second

	t.Run("long", func(t *testing.T) {
		var tally hostileTally
		for _, route := range []string{wire.PathListen, wire.PathDial, wire.PathAccept} {
			for _, size := range []int{wire.MaxNameLen + 1, 4 << 10, 64 << 10} {
				a := hostileDo(r.Addr, hostileReq("POST", route+strings.Repeat("a", size), hostileUpgrade), bound)
				want := a.status == http.StatusBadRequest ||
					(size > 8<<10 && a.status == http.StatusRequestHeaderFieldsTooLarge)
				if !want {
					t.Errorf("POST %s<%d bytes>: %v, want 400 (or 431 past the header cap)", route, size, a)
				}
				tally.add(fmt.Sprintf("%d", a.status))
			}
		}
		// A 64 KiB client name, and bad client names, on a dial.
		for _, client := range []string{strings.Repeat("c", 64<<10), strings.Repeat("c", wire.MaxNameLen+1), "a/b", "caf\xc3\xa9", "-a", "a b"} {
			a := hostileDo(r.Addr, hostileReq("POST", wire.PathDial+"x", hostileUpgrade, wire.HeaderClientName+": "+client), bound)
			if a.status != http.StatusBadRequest && a.status != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("client name of %d bytes %.12q: %v, want 400 or 431", len(client), client, a)
			}
			tally.add(fmt.Sprintf("%d", a.status))
		}
		t.Logf("long names and client names: %s", &tally)
	})

	t.Run("bad bytes", func(t *testing.T) {
		regs := hostileRegistrations(t, r.Node)
		encoded := []string{
			"", "%00", "a%00b", "a%0ab", "a%0d%0aX-Injected:%201", "a%7fb", "a%09b", "a%20b", "a%01",
			"a%2Fb", "a%2F", "%2Fa", "a/b", "a/", "..", ".", "%2e%2e", "%2E", "../listen/x", "a/../b",
			".hidden", "-a", "a%5Cb", "a%3Fb", "a%23b", "a%25b", "a:b", "a@b", "a+b", "a~b", "a,b",
			"%C3%A9", "caf%C3%A9", "%EF%BC%8F", "%E2%80%AE", "%F0%9F%98%80", "%C0%AF", "%FF",
		}
		raw := []string{"a\x00b", "a\x7fb", "a\tb", "caf\xc3\xa9", "a b", "\xff"}
		var tally hostileTally
		for _, route := range []string{wire.PathListen, wire.PathDial} {
			for _, name := range slices.Concat(encoded, raw) {
				a := hostileDo(r.Addr, hostileReq("POST", route+name, hostileUpgrade), bound)
				if a.status != http.StatusBadRequest {
					t.Errorf("POST %s%q: %v, want 400", route, name, a)
				}
				tally.add(fmt.Sprintf("%d %s", a.status, a.reason))
			}
		}
		// Not a name's route at all.
		for _, path := range []string{"//v1/dial/x", "/v1//dial/x", "/V1/dial/x", "/v1/dial"} {
			a := hostileDo(r.Addr, hostileReq("POST", path, hostileUpgrade), bound)
			if a.status != http.StatusNotFound {
				t.Errorf("POST %s: %v, want 404", path, a)
			}
			tally.add(fmt.Sprintf("%d %s", a.status, a.reason))
		}
		if got := hostileRegistrations(t, r.Node); got != regs {
			t.Errorf("registrations %d after the odd names, want %d", got, regs)
		}
		t.Logf("%d odd names on listen and dial: %s", 2*(len(encoded)+len(raw)), &tally)
	})

	t.Run("no cross-match", func(t *testing.T) {
		names := []string{"ab", "a-b", "a.b", "a_b", "a", "b", "AB", "ab.", "a..b", "a--b",
			strings.Repeat("z", wire.MaxNameLen), strings.Repeat("z", wire.MaxNameLen-1)}
		const dials = 3
		type server struct {
			ln       net.Listener
			accepted atomic.Int64
		}
		var wg sync.WaitGroup
		servers := make(map[string]*server, len(names))
		for _, name := range names {
			ln, err := endpoints.ListenRelay("tcp", name, r.URL)
			if err != nil {
				t.Fatalf("listen %q: %v", name, err)
			}
			s := &server{ln: ln}
			servers[name] = s
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					s.accepted.Add(1)
					_ = c.SetDeadline(time.Now().Add(bound))
					_, _ = io.WriteString(c, name+"\n")
					c.Close()
				}
			}()
		}
		t.Cleanup(func() {
			for _, s := range servers {
				s.ln.Close()
			}
			wg.Wait()
		})
		before := r.Node.Engine().Stats()
		for _, name := range names {
			for range dials {
				c, err := endpoints.DialTCP("tcp", name, r.Addr, "s6")
				if err != nil {
					t.Fatalf("dial %q: %v", name, err)
				}
				_ = c.SetDeadline(time.Now().Add(bound))
				got, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if got = strings.TrimSuffix(got, "\n"); got != name || err != nil {
					t.Errorf("dial %q reached %q (%v)", name, got, err)
				}
			}
		}
		// Valid names that are near misses of registered ones: 404.
		near := []string{"Ab", "aB", "a-", "ab_", "abab", "a-b-", "ba", "a-b.", "a.b.", "a_", "a..", "A", "a...b",
			strings.Repeat("z", wire.MaxNameLen-2)}
		for _, name := range near {
			_, err := endpoints.DialTCP("tcp", name, r.Addr, "s6")
			var re *endpoints.RelayError
			if !errors.As(err, &re) || re.Status != http.StatusNotFound {
				t.Errorf("dial unregistered %q: %v, want 404", name, err)
			}
		}
		// Invalid spellings of registered names: 400, never the name.
		bad := []string{"a%2F", "a%2Fb", "ab%00", "a-b/", "a%20b", "ab%0a", "a%2Eb%2F", "ab%2F..%2Fa", "%2Fab"}
		for _, name := range bad {
			a := hostileDo(r.Addr, hostileReq("POST", wire.PathDial+name, hostileUpgrade), bound)
			if a.status != http.StatusBadRequest {
				t.Errorf("dial %q: %v, want 400", name, a)
			}
		}
		after := r.Node.Engine().Stats()
		for _, name := range names {
			s := servers[name]
			if n := s.accepted.Load(); n != dials {
				t.Errorf("%q accepted %d conns, want %d: one connect event per dial", name, n, dials)
			}
			if f, ok := s.ln.(interface{ Failed() int64 }); ok && f.Failed() != 0 {
				t.Errorf("%q: %d failed callbacks: a connect event with no dial behind it", name, f.Failed())
			}
		}
		spliced := after.Spliced - before.Spliced
		if spliced != int64(dials*len(names)) || after.Expired != before.Expired || after.PairingsFailed != before.PairingsFailed {
			t.Errorf("relay stats: %d spliced (want %d), %d expired, %d pairings failed",
				spliced, dials*len(names), after.Expired-before.Expired, after.PairingsFailed-before.PairingsFailed)
		}
		t.Logf("%d look-alike names x %d dials: each reached its own server only (%d spliced); %d near misses 404, %d bad spellings 400",
			len(names), dials, spliced, len(near), len(bad))
	})
}

// TestS7MalformedRequests sends malformed requests of every kind, each
// answered with its own status (truncated ones may get no answer), while a
// healthy name keeps being dialed; afterwards a dial works and the heap has
// not grown.
func TestS7MalformedRequests(t *testing.T) {
	n := hostileSize(1000, 300)
	r := relaytest.Start(t, relaynode.Config{DialRate: -1})
	hostileEcho(t, r.URL, "healthy")
	tok := wire.NewToken().String()
	reg := wire.HeaderRegistration + ": " + wire.NewToken().String()
	body := func(path, ctype, b string, headers ...string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: relay\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
			path, strings.Join(append(headers, ""), "\r\n"), ctype, len(b), b)
	}
	manyHeaders := strings.Repeat("X-N: v\r\n", 2500)
	kinds := []struct {
		name      string
		raw       string
		want      int
		truncated bool // then no answer, or net/http's 400, is right
	}{
		{"big header", hostileReq("POST", "/v1/dial/x", hostileUpgrade, "X-Big: "+strings.Repeat("b", 16<<10)), 431, false},
		{"big request line", hostileReq("POST", "/v1/listen/"+strings.Repeat("n", 20<<10)), 431, false},
		{"many headers", hostileReq("POST", "/v1/listen/x", strings.TrimSuffix(manyHeaders, "\r\n")), 431, false},
		{"body on dial", body("/v1/dial/x", "text/plain", "0123456789", hostileUpgrade), 413, false},
		{"body on listen", body("/v1/listen/x", "text/plain", "0123456789"), 413, false},
		{"body on accept", body("/v1/accept/"+tok, "text/plain", "0123456789", hostileUpgrade, reg), 413, false},
		{"json body", body("/v1/listen/x", "application/json", `{"name":"x","token":`), 413, false},
		{"chunked body", "POST /v1/listen/x HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413, false},
		{"json request line", `{"op":"dial","name":"x"}` + "\r\n\r\n", 400, false},
		{"binary request line", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8e\x00\xff\x13\x01\r\n\r\n", 400, false},
		{"bad header line", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n", 400, false},
		{"header with NUL", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nX-A: a\x00b\r\n\r\n", 400, false},
		{"two content lengths", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, false},
		{"HTTP/1.1 without Host", "POST /v1/dial/x HTTP/1.1\r\n" + hostileUpgrade + "\r\n\r\n", 400, false},
		{"HTTP/1.0 without Host", "POST /v1/dial/x HTTP/1.0\r\n\r\n", 426, false},
		{"HTTP/2.0 request line", "POST /v1/dial/x HTTP/2.0\r\nHost: relay\r\n\r\n", 505, false},
		{"GET dial", hostileReq("GET", "/v1/dial/x", hostileUpgrade), 405, false},
		{"PUT listen", hostileReq("PUT", "/v1/listen/x"), 405, false},
		{"DELETE accept", hostileReq("DELETE", "/v1/accept/"+tok, hostileUpgrade, reg), 405, false},
		{"unknown route", hostileReq("POST", "/v2/dial/x", hostileUpgrade), 404, false},
		{"root", hostileReq("GET", "/"), 404, false},
		{"metrics on public", hostileReq("GET", "/metrics"), 404, false},
		{"dial without upgrade", hostileReq("POST", "/v1/dial/healthy"), 426, false},
		{"dial bad client name", hostileReq("POST", "/v1/dial/healthy", hostileUpgrade, wire.HeaderClientName+": a/b"), 400, false},
		{"accept bad token", hostileReq("POST", "/v1/accept/not-a-token", hostileUpgrade, reg), 400, false},
		{"accept without registration", hostileReq("POST", "/v1/accept/"+tok, hostileUpgrade), 400, false},
		{"accept bad registration", hostileReq("POST", "/v1/accept/"+tok, hostileUpgrade, wire.HeaderRegistration+": x"), 400, false},
		{"truncated request line", "POST /v1/di", 0, true},
		{"truncated headers", "POST /v1/dial/healthy HTTP/1.1\r\nHost: relay\r\nUpgr", 0, true},
		{"truncated body", "POST /v1/listen/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 10\r\n\r\n012", 413, true},
	}
	const bound = 5 * time.Second
	if _, err := hostilePing(r.Addr, "healthy"); err != nil { // warm up before the baseline
		t.Fatalf("first dial: %v", err)
	}
	before := hostileReadMem()

	// The healthy name, dialed over and over meanwhile.
	stop := make(chan struct{})
	var (
		wg            sync.WaitGroup
		healthy       []time.Duration
		healthyErr    error
		ok, failed    [64]atomic.Int64
		wrong         hostileTally
		next          atomic.Int64
		truncAnswered atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			d, err := hostilePing(r.Addr, "healthy")
			if err != nil {
				healthyErr = err
				return
			}
			healthy = append(healthy, d)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	var workers sync.WaitGroup
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := kinds[i%len(kinds)]
				var a hostileAnswer
				if k.truncated {
					a = hostileTruncated(r.Addr, k.raw, bound)
				} else {
					a = hostileDo(r.Addr, k.raw, bound)
				}
				switch {
				case a.status == k.want && a.status != 0:
					ok[i%len(kinds)].Add(1)
				case k.truncated && (a.status == 0 && a.err == nil || a.status == http.StatusBadRequest):
					ok[i%len(kinds)].Add(1)
					truncAnswered.Add(int64(min(a.status, 1)))
				default:
					failed[i%len(kinds)].Add(1)
					wrong.add(fmt.Sprintf("%s: %v", k.name, a))
				}
			}
		}()
	}
	workers.Wait()
	close(stop) // then the healthy dials
	wg.Wait()
	elapsed := time.Since(start)
	if healthyErr != nil {
		t.Errorf("a healthy dial failed during the malformed requests: %v", healthyErr)
	}
	var b strings.Builder
	total := 0
	for i, k := range kinds {
		if failed[i].Load() > 0 {
			t.Errorf("%s: %d of %d wrong", k.name, failed[i].Load(), ok[i].Load()+failed[i].Load())
		}
		total += int(ok[i].Load())
		want := fmt.Sprint(k.want)
		if k.truncated && k.want == 0 {
			want = "(none or 400)"
		}
		fmt.Fprintf(&b, " %s=%d×%s", k.name, ok[i].Load(), want)
	}
	if total != n {
		t.Errorf("%d of %d malformed requests answered right; wrong: %s", total, n, &wrong)
	}
	if _, err := hostilePing(r.Addr, "healthy"); err != nil {
		t.Errorf("dial after the malformed requests: %v", err)
	}
	after := hostileReadMem()
	t.Logf("%d malformed requests in %v, %d kinds, all right:%s", n, elapsed.Round(time.Millisecond), len(kinds), b.String())
	t.Logf("truncated requests answered 400 (the rest closed unanswered): %d", truncAnswered.Load())
	t.Logf("healthy dials meanwhile: %d, all ok, p50 %v p99 %v", len(healthy),
		hostileQuantile(healthy, 0.5).Round(time.Microsecond), hostileQuantile(healthy, 0.99).Round(time.Microsecond))
	t.Logf("heap after GC: before %.2f MiB, after %.2f MiB (%+.2f MiB)",
		float64(before.heap)/(1<<20), float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap))
	if grown := hostileMiB(before.heap, after.heap); grown > 4 {
		t.Errorf("heap grew %.2f MiB over %d malformed requests, want at most 4 MiB", grown, n)
	}
}

// hostileTruncated sends part of a request, half-closes and reads what
// comes back: nothing (status 0, err nil) or an answer.
func hostileTruncated(addr, partial string, bound time.Duration) hostileAnswer {
	c, err := hostileConn(addr, bound)
	if err != nil {
		return hostileAnswer{err: err}
	}
	defer c.Close()
	if _, err := io.WriteString(c, partial); err != nil {
		return hostileAnswer{err: err}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return hostileAnswer{err: err}
	}
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return hostileAnswer{err: err} // e.g. the deadline: the relay held it
	}
	if len(got) == 0 {
		return hostileAnswer{}
	}
	return hostileRead(bufio.NewReader(strings.NewReader(string(got))), time.Now())
}

// TestD1Slowloris opens connections that send a request header one byte
// every 500ms on each route (and some that send nothing), against a relay
// with a 1s header timeout: each is cut within the timeout plus 2s, while a
// healthy name's dials all succeed.
func TestD1Slowloris(t *testing.T) {
	const (
		rht   = time.Second
		every = 500 * time.Millisecond
		slack = 2 * time.Second
	)
	n := hostileSize(200, 50)
	r := relaytest.Start(t, relaynode.Config{ReadHeaderTimeout: rht})
	hostileEcho(t, r.URL, "healthy")
	tok := wire.NewToken().String()
	kinds := []struct{ name, prefix string }{
		{"listen header", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nX-Slow: "},
		{"dial header", "POST /v1/dial/healthy HTTP/1.1\r\nHost: relay\r\n" + hostileUpgrade + "\r\nX-Slow: "},
		{"accept header", "POST /v1/accept/" + tok + " HTTP/1.1\r\nHost: relay\r\n" + hostileUpgrade + "\r\nX-Slow: "},
		{"request line", "POST /v1/dial/slo"},
		{"silent", ""},
	}
	type result struct {
		cut   bool
		after time.Duration
		got   string
		err   error
	}
	results := make([]result, n)
	var wg, opened sync.WaitGroup
	opened.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := kinds[i%len(kinds)]
			start := time.Now()
			c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
			if err != nil {
				opened.Done()
				results[i] = result{err: err}
				return
			}
			defer c.Close()
			_, err = io.WriteString(c, k.prefix)
			opened.Done()
			if err != nil {
				results[i] = result{err: err}
				return
			}
			buf := make([]byte, 512)
			var got []byte
			for time.Since(start) < rht+slack+time.Second {
				_ = c.SetReadDeadline(time.Now().Add(every))
				m, err := c.Read(buf)
				got = append(got, buf[:m]...)
				var ne net.Error
				switch {
				case err == nil:
					continue
				case errors.As(err, &ne) && ne.Timeout():
					if k.prefix == "" {
						continue
					}
					if _, err := c.Write([]byte{'s'}); err != nil {
						results[i] = result{cut: true, after: time.Since(start), got: string(got), err: err}
						return
					}
				default:
					results[i] = result{cut: true, after: time.Since(start), got: string(got), err: err}
					return
				}
			}
			results[i] = result{after: time.Since(start), got: string(got)}
		}()
	}
	opened.Wait()
	healthy, healthyErr := hostilePings(r.Addr, "healthy", 50, 10*time.Millisecond)
	wg.Wait()

	for j, k := range kinds {
		var worst time.Duration
		var count, resets int
		answers := map[string]int{}
		for i := j; i < n; i += len(kinds) {
			res := results[i]
			switch {
			case !res.cut:
				t.Errorf("%s #%d: not cut after %v (%v), header timeout %v", k.name, i, res.after.Round(time.Millisecond), res.err, rht)
			case res.after > rht+slack:
				t.Errorf("%s #%d: cut after %v, want within %v", k.name, i, res.after.Round(time.Millisecond), rht+slack)
			}
			count++
			worst = max(worst, res.after)
			if res.got != "" {
				line, _, _ := strings.Cut(res.got, "\r\n")
				answers[line]++
			}
			if errors.Is(res.err, syscall.ECONNRESET) || errors.Is(res.err, syscall.EPIPE) {
				resets++
			}
		}
		t.Logf("slowloris %-13s %3d conns: all cut, latest after %v (header timeout %v); answered first: %v; ended by reset: %d",
			k.name, count, worst.Round(time.Millisecond), rht, answers, resets)
	}
	if healthyErr != nil || len(healthy) != 50 {
		t.Errorf("healthy dials during the slowloris: %d ok, then %v", len(healthy), healthyErr)
	}
	t.Logf("healthy dials meanwhile: %d/50 ok, p50 %v p99 %v", len(healthy),
		hostileQuantile(healthy, 0.5).Round(time.Microsecond), hostileQuantile(healthy, 0.99).Round(time.Microsecond))
}

// TestD2SlowBody sends requests that announce a body and send it slowly:
// each is refused 413 at once, without waiting for the body, and the
// relay then lets go of the connection.
func TestD2SlowBody(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	tok := wire.NewToken().String()
	reg := wire.HeaderRegistration + ": " + wire.NewToken().String()
	const (
		every = 50 * time.Millisecond // 1,000 bytes: 50s
		bound = 2 * time.Second
	)
	kinds := []struct{ name, head string }{
		{"listen", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n"},
		{"dial", "POST /v1/dial/slow HTTP/1.1\r\nHost: relay\r\n" + hostileUpgrade + "\r\nContent-Length: 1000\r\n\r\n"},
		{"accept", "POST /v1/accept/" + tok + " HTTP/1.1\r\nHost: relay\r\n" + hostileUpgrade + "\r\n" + reg + "\r\nContent-Length: 1000\r\n\r\n"},
		{"dial expect-continue", "POST /v1/dial/slow HTTP/1.1\r\nHost: relay\r\n" + hostileUpgrade + "\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n"},
		{"listen chunked", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"},
	}
	type result struct {
		answer hostileAnswer
		sent   int64         // body bytes sent before the answer
		cutErr error         // how the connection ended after the answer
		cutIn  time.Duration // from the answer to that end
	}
	run := func(head string) result {
		c, err := net.DialTimeout("tcp", r.Addr, bound)
		if err != nil {
			return result{answer: hostileAnswer{err: err}}
		}
		defer c.Close()
		if _, err := io.WriteString(c, head+"x"); err != nil {
			return result{answer: hostileAnswer{err: err}}
		}
		start := time.Now()
		var sent atomic.Int64
		sent.Store(1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the body, one byte at a time, until the relay lets go
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for sent.Load() < 1000 {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		defer wg.Wait()
		defer close(stop)
		_ = c.SetReadDeadline(start.Add(bound))
		br := bufio.NewReader(c)
		res := result{answer: hostileRead(br, start), sent: sent.Load()}
		answered := time.Now()
		_ = c.SetReadDeadline(answered.Add(bound))
		_, err = io.Copy(io.Discard, br)
		res.cutErr, res.cutIn = err, time.Since(answered)
		if err == nil {
			res.cutErr = io.EOF
		}
		return res
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			res := run(k.head)
			a := res.answer
			if a.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("slow body: %v, want 413", a)
			}
			if a.took > bound || res.sent >= 1000 {
				t.Errorf("413 after %v and %d body bytes: the relay waited for the body", a.took, res.sent)
			}
			t.Logf("413 %q after %v, %d of 1000 body bytes sent", a.reason, a.took.Round(time.Microsecond), res.sent)
			t.Run("cut", func(t *testing.T) {
				var ne net.Error
				held := errors.As(res.cutErr, &ne) && ne.Timeout()
				if held {
					t.Errorf("connection still open %v after the 413", res.cutIn.Round(time.Millisecond))
				}
				t.Logf("connection ended %v after the 413 (%v)", res.cutIn.Round(time.Millisecond), res.cutErr)
			})
		})
	}
}

// TestD3RegistrationFlood registers thousands of names from one address:
// exactly MaxRegistrationsPerIP succeed, the rest get 429 at once, memory
// stays bounded and returns when the registrations end.
func TestD3RegistrationFlood(t *testing.T) {
	n := hostileSize(5000, 500)
	// relaytest.Start lifts the per-IP cap for other tests; here it is
	// relaynode's default.
	const perIP = 64
	r := relaytest.Start(t, relaynode.Config{MaxRegistrationsPerIP: perIP})
	before := hostileReadMem()
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		tally   hostileTally
		mu      sync.Mutex // guards held and refused
		held    []*hostileStream
		refused []time.Duration
	)
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				st, a := hostileListen(&net.Dialer{}, r.Addr, fmt.Sprintf("reg-%d", i), 5*time.Second)
				tally.add(fmt.Sprintf("%d %s", a.status, a.reason))
				mu.Lock()
				if st != nil {
					held = append(held, st)
				} else if a.status == http.StatusTooManyRequests {
					refused = append(refused, a.took)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Cleanup(func() {
		for _, st := range held {
			st.c.Close()
		}
	})
	during := hostileReadMem()
	if len(held) != perIP || len(refused) != n-perIP {
		t.Errorf("%d registrations: %d held, %d refused 429, want %d and %d; answers: %s",
			n, len(held), len(refused), perIP, n-perIP, &tally)
	}
	if got := hostileRegistrations(t, r.Node); got != perIP {
		t.Errorf("relay has %d registrations, want %d", got, perIP)
	}
	if slow := hostileQuantile(refused, 1); slow > time.Second {
		t.Errorf("slowest 429 took %v: not at once", slow)
	}
	// Another loopback address has its own allowance.
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if st, a := hostileListen(other, r.Addr, "other-ip", 5*time.Second); st != nil {
		st.c.Close()
	} else if a.status != 0 {
		t.Errorf("registration from 127.0.0.2 after 127.0.0.1's cap: %v, want 200", a)
	} else {
		t.Logf("no registration from 127.0.0.2 (%v): per-address check skipped", a.err)
	}
	for _, st := range held {
		st.c.Close()
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return hostileRegistrations(t, r.Node) == 0 },
		"registrations still live after their streams closed")
	// The cap is released: the address may register again.
	st, a := hostileListen(&net.Dialer{}, r.Addr, "again", 5*time.Second)
	if st == nil {
		t.Fatalf("registration after the flood ended: %v", a)
	}
	st.c.Close()
	relaytest.Eventually(t, 5*time.Second, func() bool { return hostileRegistrations(t, r.Node) == 0 }, "registration again still live")
	after := hostileReadMem()
	t.Logf("%d registrations from 127.0.0.1 in %v: %s", n, elapsed.Round(time.Millisecond), &tally)
	t.Logf("429 answer times: p50 %v p99 %v max %v", hostileQuantile(refused, 0.5).Round(time.Microsecond),
		hostileQuantile(refused, 0.99).Round(time.Microsecond), hostileQuantile(refused, 1).Round(time.Microsecond))
	t.Logf("heap after GC: before %.2f MiB, with %d held %.2f MiB (%+.2f), after closing all %.2f MiB (%+.2f); stacks %.2f, %.2f, %.2f MiB",
		float64(before.heap)/(1<<20), perIP, float64(during.heap)/(1<<20), hostileMiB(before.heap, during.heap),
		float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap),
		float64(before.stack)/(1<<20), float64(during.stack)/(1<<20), float64(after.stack)/(1<<20))
	if grown := hostileMiB(before.heap, during.heap); grown > 8 {
		t.Errorf("heap grew %.2f MiB with %d registrations held and %d refused, want at most 8 MiB", grown, perIP, n-perIP)
	}
	if grown := hostileMiB(before.heap, after.heap); grown > 2 {
		t.Errorf("heap %.2f MiB above baseline after the registrations ended, want at most 2 MiB", grown)
	}

	t.Run("overall cap", func(t *testing.T) {
		const total = 8
		r := relaytest.Start(t, relaynode.Config{MaxRegistrations: total})
		var streams []*hostileStream
		defer func() {
			for _, st := range streams {
				st.c.Close()
			}
		}()
		for i := range total {
			st, a := hostileListen(&net.Dialer{}, r.Addr, fmt.Sprintf("cap-%d", i), 5*time.Second)
			if st == nil {
				t.Fatalf("registration %d of %d: %v", i+1, total, a)
			}
			streams = append(streams, st)
		}
		_, a := hostileListen(&net.Dialer{}, r.Addr, "one-more", 5*time.Second)
		if a.status != http.StatusServiceUnavailable {
			t.Errorf("registration past MaxRegistrations %d: %v, want 503", total, a)
		}
		t.Logf("MaxRegistrations %d: registration %d answered %v", total, total+1, a)
	})
}

// TestD4NeverCalledBack dials a registered server that never calls back,
// with more dials in flight than MaxPendingPerName: the excess is refused
// 503 at once, the pending ones get 504 at the callback deadline, and the
// pending count and the heap come back.
func TestD4NeverCalledBack(t *testing.T) {
	const (
		perName = 100
		timeout = time.Second
		workers = perName + 50 // more in flight than the cap, or it is never reached
	)
	n := hostileSize(5000, 500)
	r := relaytest.Start(t, relaynode.Config{
		DialRate: -1,
		Limits: actors.Limits{
			MaxPendingPerName: perName,
			CallbackTimeout:   timeout,
			EventQueue:        2 * perName, // so that only the pending cap refuses
		},
	})
	sink := hostileServeSink(t, r.Addr, "sink", nil) // reads its events, never calls back
	before := hostileReadMem()

	type answer struct {
		status int
		reason string
		took   time.Duration
	}
	answers := make([]answer, n)
	var (
		wg, monWG  sync.WaitGroup
		next       atomic.Int64
		maxPending atomic.Int64
		maxLive    atomic.Int64
	)
	stop := make(chan struct{})
	monWG.Add(1)
	go func() { // the pending count, as the relay reports it
		defer monWG.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := r.Node.Status(ctx) // not hostileStatusName: no t.Fatal off the test's goroutine
			cancel()
			for _, ns := range st.Names {
				if err == nil && ns.Name == "sink" && ns.Pending > maxPending.Load() {
					maxPending.Store(ns.Pending)
				}
			}
			if l := r.Node.Engine().Live(actors.KindPending); l > maxLive.Load() {
				maxLive.Store(l)
			}
		}
	}()
	raw := hostileReq("POST", wire.PathDial+"sink", hostileUpgrade, wire.HeaderClientName+": d4")
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				a := hostileDo(r.Addr, raw, timeout+3*time.Second)
				answers[i] = answer{a.status, a.reason, a.took}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	monWG.Wait()

	var tally hostileTally
	var fast, timedOut []time.Duration
	for _, a := range answers {
		tally.add(fmt.Sprintf("%d %s", a.status, a.reason))
		switch a.status {
		case http.StatusServiceUnavailable:
			fast = append(fast, a.took)
		case http.StatusGatewayTimeout:
			timedOut = append(timedOut, a.took)
			if a.took < timeout/2 || a.took > timeout+2*time.Second {
				t.Errorf("504 after %v, want at the callback deadline %v (within +2s)", a.took.Round(time.Millisecond), timeout)
			}
		}
	}
	if len(fast)+len(timedOut) != n {
		t.Errorf("%d dials: want only 503 and 504, got %s", n, &tally)
	}
	if len(timedOut) < perName {
		t.Errorf("%d dials answered 504, want at least the %d pending", len(timedOut), perName)
	}
	if slow := hostileQuantile(fast, 1); slow >= timeout {
		t.Errorf("slowest 503 took %v, not at once (callback deadline %v)", slow, timeout)
	}
	if m := maxPending.Load(); m > perName {
		t.Errorf("relay reported %d pending dials on the name, cap %d", m, perName)
	}
	relaytest.Eventually(t, 5*time.Second, func() bool { return r.Node.Engine().Live(actors.KindPending) == 0 },
		"pending dials still live")
	relaytest.Eventually(t, 5*time.Second, func() bool { return sink.events.Load() == int64(len(timedOut)) },
		fmt.Sprintf("connect events %d, want one per pending dial (%d)", sink.events.Load(), len(timedOut)))
	after := hostileReadMem()
	t.Logf("%d dials to a server that never calls back, %d in flight, in %v: %s",
		n, workers, elapsed.Round(time.Millisecond), &tally)
	t.Logf("503 answer times: p50 %v p99 %v max %v", hostileQuantile(fast, 0.5).Round(time.Microsecond),
		hostileQuantile(fast, 0.99).Round(time.Microsecond), hostileQuantile(fast, 1).Round(time.Microsecond))
	t.Logf("504 answer times: min %v p50 %v max %v (deadline %v)", hostileQuantile(timedOut, 0).Round(time.Millisecond),
		hostileQuantile(timedOut, 0.5).Round(time.Millisecond), hostileQuantile(timedOut, 1).Round(time.Millisecond), timeout)
	t.Logf("pending on the name peaked at %d (cap %d; live pending actors peaked at %d), back to 0; %d connect events, one per 504",
		maxPending.Load(), perName, maxLive.Load(), sink.events.Load())
	t.Logf("heap after GC: before %.2f MiB, after %.2f MiB (%+.2f MiB)",
		float64(before.heap)/(1<<20), float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap))
	if grown := hostileMiB(before.heap, after.heap); grown > 4 {
		t.Errorf("heap %.2f MiB above baseline after %d dials, want at most 4 MiB", grown, n)
	}
}

// TestD5StalledListener floods dials at a listener that never reads its
// stream: its dials get 503 once its queue is full, its stream is dropped
// at the write deadline, and another name's dial p99 stays within 3x
// (+2ms) of what it was before.
//
// The relay's write deadline can only fire once the kernel stops taking
// the stream's bytes. On loopback Linux autotunes a socket's send buffer to
// tcp_wmem's maximum (4 MiB), about 9,000 connect events, so the design's
// behaviour is checked on a relay whose sockets have a 16 KiB send buffer
// (set on its listener, inherited by what it accepts), and the default
// buffers are a known bug.
func TestD5StalledListener(t *testing.T) {
	cfg := relaynode.Config{
		EventWriteTimeout: 500 * time.Millisecond,
		DialRate:          -1,
		Limits:            actors.Limits{EventQueue: 8, CallbackTimeout: time.Second},
	}
	t.Run("small send buffer", func(t *testing.T) {
		r := hostileStart(t, cfg, 16<<10)
		hostileStalled(t, r, cfg, 15*time.Second)
	})
	t.Run("default buffers", func(t *testing.T) {
		r := relaytest.Start(t, cfg)
		hostileStalled(t, &hostileRelay{Node: r.Node, Addr: r.Addr, URL: r.URL}, cfg, 20*time.Second)
	})
}

// hostileRelay is a relay on loopback, as relaytest.Relay.
type hostileRelay struct {
	Node      *relaynode.Node
	Addr, URL string
}

// hostileStart starts a relay for cfg, as relaytest.Start does, on a
// listener with SO_SNDBUF set to sndbuf: the sockets it accepts inherit the
// size and do not autotune it.
func hostileStart(t testing.TB, cfg relaynode.Config, sndbuf int) *hostileRelay {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = relaytest.Logger(t, slog.LevelWarn)
	}
	node, err := relaynode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()
	t.Cleanup(func() {
		node.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &hostileRelay{Node: node, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
}

// hostileStalled is D5 on relay r: a stalled listener flooded with dials
// for at most floodBound.
func hostileStalled(t *testing.T, r *hostileRelay, cfg relaynode.Config, floodBound time.Duration) {
	const (
		floodWorkers = 24
		pingGap      = 5 * time.Millisecond // before and during alike
	)
	hostileEcho(t, r.URL, "healthy")
	samples := hostileSize(400, 200)
	if _, err := hostilePings(r.Addr, "healthy", 20, 0); err != nil { // warm-up, not measured
		t.Fatalf("healthy dials: %v", err)
	}
	beforeDs, err := hostilePings(r.Addr, "healthy", samples, pingGap)
	if err != nil {
		t.Fatalf("healthy dials before: %v", err)
	}

	// The stalled server: a 1 KiB receive buffer, set before the connect
	// so the window it offers stays small, and no reads after the ready
	// event.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
		return errors.Join(err, serr)
	}}
	stalled, a := hostileListen(small, r.Addr, "stalled", 5*time.Second)
	if stalled == nil {
		t.Fatalf("listen stalled: %v", a)
	}
	defer stalled.c.Close()

	var (
		wg        sync.WaitGroup
		tally     hostileTally
		gone      atomic.Bool
		first503  atomic.Int64 // since start
		first404  atomic.Int64
		duringDs  []time.Duration
		duringErr error
		// Big connect events fill the socket sooner.
		client = wire.HeaderClientName + ": " + strings.Repeat("c", wire.MaxNameLen)
	)
	raw := hostileReq("POST", wire.PathDial+"stalled", hostileUpgrade, client)
	start := time.Now()
	for range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !gone.Load() && time.Since(start) < floodBound {
				a := hostileDo(r.Addr, raw, cfg.CallbackTimeout+3*time.Second)
				tally.add(fmt.Sprintf("%d %s", a.status, a.reason))
				switch a.status {
				case http.StatusServiceUnavailable:
					first503.CompareAndSwap(0, int64(time.Since(start)))
					time.Sleep(20 * time.Millisecond) // a flood, not a busy loop
				case http.StatusNotFound:
					first404.CompareAndSwap(0, int64(time.Since(start)))
					gone.Store(true)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the healthy name, dialed meanwhile
		defer wg.Done()
		for !gone.Load() && time.Since(start) < floodBound && len(duringDs) < samples {
			d, err := hostilePing(r.Addr, "healthy")
			if err != nil {
				duringErr = err
				return
			}
			duringDs = append(duringDs, d)
			time.Sleep(pingGap)
		}
	}()
	wg.Wait()

	if !gone.Load() {
		t.Fatalf("stalled name still registered %v into the flood: %s", floodBound, &tally)
	}
	if first503.Load() == 0 || first503.Load() > first404.Load() {
		t.Errorf("no 503 before the stream was dropped: %s", &tally)
	}
	if _, ok := hostileStatusName(t, r.Node, "stalled"); ok {
		t.Errorf("stalled registration still in the relay's status after its dials got 404")
	}
	if _, ok := hostileStatusName(t, r.Node, "healthy"); !ok {
		t.Errorf("healthy registration gone")
	}
	// The relay has closed the stalled stream: its bytes end in EOF.
	_ = stalled.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	left, err := io.Copy(io.Discard, stalled.c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("stalled stream not closed by the relay: %v after %d bytes", err, left)
	}
	if duringErr != nil {
		t.Errorf("a healthy dial failed during the flood: %v", duringErr)
	}
	if len(duringDs) < 20 {
		t.Errorf("only %d healthy dials during the flood", len(duringDs))
	}
	p99Before, p99During := hostileQuantile(beforeDs, 0.99), hostileQuantile(duringDs, 0.99)
	t.Logf("flood of %d dialers on the stalled name: first 503 at %v, stream dropped (first 404) at %v; answers: %s",
		floodWorkers, time.Duration(first503.Load()).Round(time.Millisecond), time.Duration(first404.Load()).Round(time.Millisecond), &tally)
	t.Logf("stalled stream after the drop: %d bytes left to read, then %v", left, err)
	t.Logf("healthy dial p50/p90/p99/max: before %v/%v/%v/%v (%d dials), during %v/%v/%v/%v (%d dials); bound 3×p99+2ms = %v",
		hostileQuantile(beforeDs, 0.5).Round(time.Microsecond), hostileQuantile(beforeDs, 0.9).Round(time.Microsecond),
		p99Before.Round(time.Microsecond), hostileQuantile(beforeDs, 1).Round(time.Microsecond), len(beforeDs),
		hostileQuantile(duringDs, 0.5).Round(time.Microsecond), hostileQuantile(duringDs, 0.9).Round(time.Microsecond),
		p99During.Round(time.Microsecond), hostileQuantile(duringDs, 1).Round(time.Microsecond), len(duringDs),
		(3*p99Before + 2*time.Millisecond).Round(time.Microsecond))
	// A ratio bound, not a timing target. 2× flaked on this 2-core machine
	// (p99 of a few hundred dials is their 2nd to 4th slowest, and other
	// processes share the cores): 8.3ms against 2×3.1ms+2ms once, in a run
	// whose p50 did not move; so 3×.
	if p99During > 3*p99Before+2*time.Millisecond {
		t.Errorf("healthy dial p99 %v during the flood, want at most 3×%v+2ms", p99During, p99Before)
	}
}

// TestD6IdlePairs holds idle spliced pairs and reports what each costs,
// then checks that PairIdleTimeout cuts every one of them on time.
func TestD6IdlePairs(t *testing.T) {
	n := hostileSize(2000, 200)
	const bound = 5 * time.Second

	// makePairs dials n pairs through the relay with 8 workers and hands
	// each client side to client, as the sink hands each server side to
	// its handler.
	makePairs := func(t *testing.T, addr string, client func(c net.Conn, since time.Time)) error {
		var (
			wg    sync.WaitGroup
			next  atomic.Int64
			first atomic.Pointer[error]
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) && first.Load() == nil {
					c, a := hostileDial(addr, "idle", bound)
					if c == nil {
						err := fmt.Errorf("dial: %v", a)
						first.CompareAndSwap(nil, &err)
						return
					}
					client(c, time.Now())
				}
			}()
		}
		wg.Wait()
		if p := first.Load(); p != nil {
			return *p
		}
		return nil
	}

	t.Run("cost", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{DialRate: -1})
		var (
			mu   sync.Mutex
			held []net.Conn
		)
		hold := func(c net.Conn, _ time.Time) {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
		defer func() {
			mu.Lock()
			for _, c := range held {
				c.Close()
			}
			mu.Unlock()
		}()
		sink := hostileServeSink(t, r.Addr, "idle", hold)
		if _, a := hostileDial(r.Addr, "nobody", bound); a.status != http.StatusNotFound { // warm the dial path
			t.Fatalf("warm-up dial: %v", a)
		}
		baseMem, baseSocks, baseFDs := hostileReadMem(), relaytest.Sockets(t), hostileFDs(t)
		start := time.Now()
		if err := makePairs(t, r.Addr, hold); err != nil {
			t.Fatal(err)
		}
		relaytest.Eventually(t, bound, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(held) == 2*n && r.Node.Engine().Live(actors.KindPair) == int64(n)
		}, fmt.Sprintf("want %d pairs held", n))
		elapsed := time.Since(start)
		mem, socks, fds := hostileReadMem(), relaytest.Sockets(t), hostileFDs(t)
		if sink.failed.Load() != 0 {
			t.Errorf("%d callbacks failed", sink.failed.Load())
		}
		perPair := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
		sockPer := float64(socks-baseSocks) / float64(n)
		fdPer := float64(fds-baseFDs) / float64(n)
		t.Logf("%d idle pairs spliced in %v", n, elapsed.Round(time.Millisecond))
		t.Logf("per pair, in-process (relay plus the test's two raw ends): heap %.0f B + stacks %.0f B = %.1f KiB",
			perPair(baseMem.heap, mem.heap), perPair(baseMem.stack, mem.stack), perPair(baseMem.total(), mem.total())/1024)
		t.Logf("per pair: %.2f sockets (2 relay-side + 2 endpoint-side expected), %.2f fds of every kind (the rest are splice pipes)",
			sockPer, fdPer)
		if sockPer < 4 || sockPer > 4.05 {
			t.Errorf("%.2f sockets per pair, want 4 (2 relay-side, 2 endpoint-side)", sockPer)
		}
		t.Run("no pipes while idle", func(t *testing.T) {
			if fdPer > 4.05 {
				t.Errorf("%.2f fds per idle pair, want 4 (its sockets)", fdPer)
			}
		})
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		held = nil
		mu.Unlock()
		relaytest.Eventually(t, bound, func() bool { return r.Node.Engine().Live(actors.KindPair) == 0 }, "pairs still live after both ends closed")
		relaytest.SocketsBack(t, baseSocks, bound)
	})

	t.Run("idle timeout", func(t *testing.T) {
		const idle = time.Second
		r := relaytest.Start(t, relaynode.Config{DialRate: -1, Limits: actors.Limits{PairIdleTimeout: idle}})
		type end struct {
			after time.Duration
			err   error
		}
		var (
			mu   sync.Mutex
			ends []end
			wg   sync.WaitGroup
		)
		// watch reads c until the relay cuts it.
		watch := func(c net.Conn, since time.Time) {
			defer c.Close()
			_ = c.SetReadDeadline(since.Add(idle + 3*time.Second + 2*time.Second))
			var b [1]byte
			_, err := c.Read(b[:])
			mu.Lock()
			ends = append(ends, end{time.Since(since), err})
			mu.Unlock()
		}
		sink := hostileServeSink(t, r.Addr, "idle", watch)
		before := r.Node.Engine().Stats()
		err := makePairs(t, r.Addr, func(c net.Conn, since time.Time) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				watch(c, since)
			}()
		})
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		relaytest.Eventually(t, bound, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(ends) == 2*n
		}, "not every end of every pair has ended")
		var worst time.Duration
		var eofs, resets int
		for _, e := range ends {
			var ne net.Error
			switch {
			case errors.As(e.err, &ne) && ne.Timeout():
				t.Errorf("an end still open after %v (idle timeout %v)", e.after.Round(time.Millisecond), idle)
			case e.after > idle+3*time.Second:
				t.Errorf("an end cut after %v, want within %v", e.after.Round(time.Millisecond), idle+3*time.Second)
			case errors.Is(e.err, io.EOF):
				eofs++
			default:
				resets++
			}
			worst = max(worst, e.after)
		}
		relaytest.Eventually(t, bound, func() bool { return r.Node.Engine().Live(actors.KindPair) == 0 }, "pairs still live after the idle timeout")
		after := r.Node.Engine().Stats()
		if cut := after.PairsIdle - before.PairsIdle; cut != int64(n) {
			t.Errorf("relay counted %d pairs cut idle, want %d", cut, n)
		}
		if sink.failed.Load() != 0 {
			t.Errorf("%d callbacks failed", sink.failed.Load())
		}
		t.Logf("%d idle pairs, idle timeout %v: all %d ends cut, latest %v after its pair started (%d EOF, %d reset); pairs live 0",
			n, idle, len(ends), worst.Round(time.Millisecond), eofs, resets)
	})
}

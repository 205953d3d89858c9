package relaynode_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// halfSent is the start of a request whose headers never end.
const halfSent = "GET /v1/nothing HTTP/1.1\r\nHost: relay\r\n"

// serveEchoOn registers an echo server named name on the relay at addr.
func serveEchoOn(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := endpoints.ListenRelay("tcp", name, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// echoThrough dials name through the relay at addr and checks one echo.
func echoThrough(addr, name string) error {
	c, err := endpoints.NewRelayDialer(addr, "", endpoints.WithDialTimeout(20*time.Second)).Dial("tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

// flood opens n connections to addr, each sending the start of a request
// whose headers never end, and returns them.
func flood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood: %v", err)
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, halfSent) // a refused one may be reset already
	}
	return conns
}

// answered splits conns into those the relay answered or closed before
// the deadline (refused) and those it still holds open.
func answered(conns []net.Conn, deadline time.Time) (refused, held int) {
	res := make(chan bool, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(deadline)
			_, err := c.Read(make([]byte, 512))
			var ne net.Error
			res <- !(errors.As(err, &ne) && ne.Timeout())
		}()
	}
	for range conns {
		if <-res {
			refused++
		} else {
			held++
		}
	}
	return refused, held
}

// TestHeaderWaitCap checks the per-client cap on connections whose request
// headers are unfinished: one client's half-sent requests beyond it are
// answered 429 and closed at once, the count is in the refusals, another
// client's dial goes through meanwhile, and a finished request frees its
// slot.
func TestHeaderWaitCap(t *testing.T) {
	r := startDual(t, relaynode.Config{MaxHeaderWaitPerIP: 4})
	serveEchoOn(t, r.Addr6, "echo")
	held := flood(t, r.Addr, 4)

	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("fifth connection: %v, want a 429 at once", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "too many unfinished requests") {
		t.Fatalf("fifth connection: %d %q", resp.StatusCode, body)
	}
	for i := range 3 {
		if err := echoThrough(r.Addr6, "echo"); err != nil {
			t.Fatalf("dial %d from ::1 during the flood: %v", i, err)
		}
	}
	st, err := r.Node.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, rf := range st.Refusals {
		if rf.Route == "connection" && rf.Status == http.StatusTooManyRequests {
			n += rf.Count
		}
	}
	if n != 1 {
		t.Fatalf("connection refusals %+v, want one 429", st.Refusals)
	}
	rec := httptest.NewRecorder()
	r.Node.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	const series = `relay_refusals_total{reason="too many unfinished requests from this address",route="connection",status="429"} 1`
	if !strings.Contains(rec.Body.String(), series) {
		t.Fatalf("/metrics lacks %s", series)
	}

	// One half-sent request finishes: its answer comes, and its slot is
	// free for a new connection.
	if _, err := io.WriteString(held[0], "\r\n"); err != nil {
		t.Fatal(err)
	}
	held[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("finished request: %v %v, want 404", resp, err)
	}
	held[0].Close()
	relaytest.Eventually(t, 10*time.Second, func() bool {
		a := relaytest.Do(r.Addr, "GET /v1/nothing HTTP/1.1\r\nHost: relay\r\n\r\n", 5*time.Second)
		return a.Status == http.StatusNotFound
	}, "a new connection admitted once a slot is free")
}

// fdChildEnv names the mode of the relay process TestFDLimit starts: the
// test binary itself, under a small ulimit -n.
const fdChildEnv = "RELAYNODE_FDLIMIT_CHILD"

// TestFDLimitChild is the relay of TestFDLimit, in its own process. It
// serves on 127.0.0.1 and ::1, prints both addresses, and when its stdin
// closes prints its connection refusals and exits.
func TestFDLimitChild(t *testing.T) {
	mode := os.Getenv(fdChildEnv)
	if mode == "" {
		t.Skip("the relay process of TestFDLimit")
	}
	capped, err := strconv.Atoi(mode)
	if err != nil {
		t.Fatal(err)
	}
	node, err := relaynode.New(relaynode.Config{
		MaxHeaderWaitPerIP: capped,
		ReadHeaderTimeout:  time.Minute, // the flood stays for the whole test
	})
	if err != nil {
		t.Fatal(err)
	}
	var served []chan error
	var addrs []string
	for _, a := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		go func() { ch <- node.Serve(ln) }()
		served = append(served, ch)
		addrs = append(addrs, ln.Addr().String())
	}
	fmt.Printf("ADDRS %s\n", strings.Join(addrs, " "))
	_, _ = io.Copy(io.Discard, os.Stdin)
	st, err := node.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int64{}
	for _, rf := range st.Refusals {
		if rf.Route == "connection" {
			counts[rf.Status] += rf.Count
		}
	}
	fmt.Printf("REFUSED 429=%d 503=%d\n", counts[429], counts[503])
	node.Close()
	for _, ch := range served {
		<-ch
	}
}

// fdChild is a relay process started by TestFDLimit.
type fdChild struct {
	addr4, addr6 string
	stdin        io.WriteCloser
	out          *bufio.Reader
	cmd          *exec.Cmd
}

// startFDChild runs the test binary's TestFDLimitChild under ulimit -n
// limit, with MaxHeaderWaitPerIP capped.
func startFDChild(t *testing.T, limit, capped int) *fdChild {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh for ulimit")
	}
	cmd := exec.Command(sh, "-c", `ulimit -n "$1" && shift && exec "$@"`, "sh", strconv.Itoa(limit),
		os.Args[0], "-test.run=^TestFDLimitChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+strconv.Itoa(capped))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ch := &fdChild{stdin: stdin, out: bufio.NewReader(stdout), cmd: cmd}
	line := ch.line(t, "ADDRS ")
	f := strings.Fields(line)
	if len(f) != 2 {
		t.Fatalf("child: %q", line)
	}
	ch.addr4, ch.addr6 = f[0], f[1]
	return ch
}

// line returns the rest of the child's next output line that starts with
// prefix, skipping others (the test framework's own).
func (c *fdChild) line(t *testing.T, prefix string) string {
	t.Helper()
	for range 100 {
		l, err := c.out.ReadString('\n')
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSpace(rest)
		}
		if err != nil {
			t.Fatalf("child output ended before %q: %v", prefix, err)
		}
	}
	t.Fatalf("no %q line from the child", prefix)
	return ""
}

// refusals closes the child's stdin and reads its refusal counts.
func (c *fdChild) refusals(t *testing.T) (r429, r503 int) {
	t.Helper()
	c.stdin.Close()
	l := c.line(t, "REFUSED ")
	if _, err := fmt.Sscanf(l, "429=%d 503=%d", &r429, &r503); err != nil {
		t.Fatalf("child: %q: %v", l, err)
	}
	return r429, r503
}

// TestFDLimit runs the relay in a process of its own under ulimit -n and
// floods it, from 127.0.0.1, with requests whose headers never end.
//
// With the per-client cap, the flood holds only its cap of descriptors:
// the rest is refused at once, and dials from ::1 go through during the
// flood. Without the cap the flood reaches the fd limit, where the relay
// refuses each new connection at once from its fd reserve (net/http alone
// would back off and leave them all waiting), and serves dials again once
// the flood is gone.
func TestFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relay processes")
	}
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	t.Run("capped", func(t *testing.T) {
		const limit, capped, n = 128, 16, 100
		ch := startFDChild(t, limit, capped)
		serveEchoOn(t, ch.addr6, "echo")
		conns := flood(t, ch.addr4, n)
		for i := range 5 {
			if err := echoThrough(ch.addr6, "echo"); err != nil {
				t.Fatalf("dial %d from ::1 during the flood: %v", i, err)
			}
		}
		refused, held := answered(conns, time.Now().Add(3*time.Second))
		if held != capped || refused != n-capped {
			t.Fatalf("flood of %d: %d held, %d refused; want %d held", n, held, refused, capped)
		}
		if r429, r503 := ch.refusals(t); r429 != n-capped || r503 != 0 {
			t.Fatalf("relay counted %d×429 and %d×503, want %d×429", r429, r503, n-capped)
		}
	})
	t.Run("at the fd limit", func(t *testing.T) {
		const limit, n = 64, 150
		ch := startFDChild(t, limit, -1)
		conns := flood(t, ch.addr4, n)
		refused, held := answered(conns, time.Now().Add(3*time.Second))
		if held >= limit || refused < n-limit {
			t.Fatalf("flood of %d under ulimit -n %d: %d held, %d refused at once; want at least %d refused",
				n, limit, held, refused, n-limit)
		}
		for _, c := range conns {
			c.Close()
		}
		// The relay frees the flood's descriptors as it reads their EOFs.
		var ln net.Listener
		relaytest.Eventually(t, 20*time.Second, func() bool {
			var err error
			ln, err = endpoints.ListenRelay("tcp", "echo", ch.addr6)
			return err == nil
		}, "a registration once the flood is gone")
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = io.Copy(c, c)
				}()
			}
		}()
		relaytest.Eventually(t, 20*time.Second, func() bool { return echoThrough(ch.addr6, "echo") == nil },
			"a dial once the flood is gone")
		if _, r503 := ch.refusals(t); r503 < n-limit {
			t.Fatalf("relay counted %d×503, want at least %d", r503, n-limit)
		}
	})
}

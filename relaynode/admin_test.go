package relaynode_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// startAdmin serves r's admin handler on loopback and returns its base URL.
func startAdmin(t *testing.T, r *relaytest.Relay) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Node.ServeAdmin(ln) }()
	t.Cleanup(func() { r.Close(); <-done })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample whose name and labels are
// exactly series (e.g. `relay_dials_total{outcome="spliced"}`), or 0.
func metric(t *testing.T, text, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// TestMetricsCountExactly scrapes /metrics after a known sequence of
// registrations, dials and refusals and checks each counter moved by
// exactly that much.
func TestMetricsCountExactly(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	admin := startAdmin(t, r)
	_, before := get(t, admin+"/metrics")

	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ServeEcho(t, ln)
	const spliced = 3
	for i := range spliced {
		c, err := endpoints.DialTCP("tcp", "svc", r.Addr, "m")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Write([]byte("12345"))
		c.(interface{ CloseWrite() error }).CloseWrite()
		io.ReadAll(c)
		c.Close()
	}
	for range 2 {
		if _, err := endpoints.DialTCP("tcp", "nobody", r.Addr, "m"); err == nil {
			t.Fatal("dial to an unknown name succeeded")
		}
	}
	if _, err := endpoints.ListenRelay("tcp", "svc", r.URL); err == nil {
		t.Fatal("duplicate listen succeeded")
	}
	relaytest.Eventually(t, 3*time.Second, func() bool {
		_, m := get(t, admin+"/metrics")
		return metric(t, m, "relay_pairs") == 0 && metric(t, m, `relay_relayed_bytes_total{direction="to_client"}`) == 5*spliced
	}, "pairs did not finish")
	_, after := get(t, admin+"/metrics")
	delta := func(series string) float64 { return metric(t, after, series) - metric(t, before, series) }
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`relay_dials_total{outcome="spliced"}`, spliced},
		{`relay_dials_total{outcome="unknown_name"}`, 2},
		{`relay_dials_total{outcome="timeout"}`, 0},
		{`relay_refusals_total{reason="unknown name",route="dial",status="404"}`, 2},
		{`relay_refusals_total{reason="name already registered",route="listen",status="409"}`, 1},
		{`relay_relayed_bytes_total{direction="to_server"}`, 5 * spliced},
		{`relay_relayed_bytes_total{direction="to_client"}`, 5 * spliced},
		{`relay_dial_splice_seconds_count{path="cold"}`, spliced},
		{`relay_dial_splice_seconds_count{path="warm"}`, 0},
		{`relay_parked_callbacks`, 0},
		{`relay_registrations`, 1},
		{`relay_names`, 1},
		{`relay_actors{kind="listener"}`, 1},
		{`relay_actors{kind="pair"}`, 0},
	} {
		if got := delta(c.series); got != c.want {
			t.Errorf("%s moved by %v, want %v", c.series, got, c.want)
		}
	}
	if sum := metric(t, after, `relay_dial_splice_seconds_sum{path="cold"}`); sum <= 0 || sum > 10*spliced {
		t.Errorf("relay_dial_splice_seconds_sum = %v, want a short positive total", sum)
	}
	// The runtime's and the process's series are there for capacity
	// planning: goroutines, heap, open fds.
	for _, s := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_open_fds"} {
		if metric(t, after, s) <= 0 {
			t.Errorf("%s = %v, want a positive figure", s, metric(t, after, s))
		}
	}
	if metric(t, after, `relay_actor_messages_total{kind="directory"}`) <= metric(t, before, `relay_actor_messages_total{kind="directory"}`) {
		t.Error("directory message count did not move")
	}
	t.Logf("dials spliced %v, unknown %v", delta(`relay_dials_total{outcome="spliced"}`), delta(`relay_dials_total{outcome="unknown_name"}`))
}

func TestStatusMatchesLiveState(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	admin := startAdmin(t, r)
	a, err := endpoints.ListenRelay("tcp", "alpha", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ServeEcho(t, a)
	b, err := endpoints.ListenRelay("tcp", "beta", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// One live pair on alpha, held open.
	c, err := endpoints.DialTCP("tcp", "alpha", r.Addr, "s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))

	code, body := get(t, admin+"/status.json")
	if code != 200 {
		t.Fatalf("/status.json: %d", code)
	}
	var st relaynode.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Registrations != 2 || len(st.Names) != 2 || st.Names[0].Name != "alpha" || st.Names[1].Name != "beta" {
		t.Fatalf("names = %+v", st.Names)
	}
	if st.Pairs != 1 || st.Names[0].Pairs != 1 || st.Names[1].Pairs != 0 || st.Dials["spliced"] != 1 {
		t.Fatalf("pairs: total %d, alpha %d, beta %d, spliced %d", st.Pairs, st.Names[0].Pairs, st.Names[1].Pairs, st.Dials["spliced"])
	}
	if len(st.Actors) != 4 || st.Actors[1].Kind != "listener" || st.Actors[1].Live != 2 {
		t.Fatalf("actors = %+v", st.Actors)
	}
	code, page := get(t, admin+"/status")
	if code != 200 || !strings.Contains(page, "<td>alpha</td>") || !strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("/status: %d\n%s", code, page)
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Fatal("/status page refers to an external asset")
	}
	if code, text := get(t, admin+"/healthz"); code != 200 || text != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, text)
	}
	if code, _ := get(t, admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go r.Node.Shutdown(ctx)
	relaytest.Eventually(t, 2*time.Second, func() bool {
		code, _ := get(t, admin+"/readyz")
		return code == http.StatusServiceUnavailable
	}, "/readyz still ready while draining")
}

// TestAdminNotOnPublic checks the admin routes do not exist on the public
// listener.
func TestAdminNotOnPublic(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/status", "/status.json"} {
		if code, _ := get(t, r.URL+p); code != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", p, code)
		}
	}
}

// TestTrustedProxies checks X-Forwarded-For is believed only from a
// trusted peer.
func TestTrustedProxies(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
		xff     string
		want    string // "" means the TCP peer's address
	}{
		{"untrusted peer", nil, "203.0.113.9", ""},
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "203.0.113.9", "203.0.113.9:0"},
		{"rightmost untrusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")},
			"198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9:0"},
		{"malformed chain", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "not-an-ip", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := relaytest.Start(t, relaynode.Config{TrustedProxies: tt.trusted})
			ln, err := endpoints.ListenRelay("tcp", "svc", r.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			conn, err := net.Dial("tcp", r.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "POST /v1/dial/svc HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"+
				"Upgrade: clusterlink-relay/1\r\nX-Forwarded-For: "+tt.xff+"\r\n\r\n")
			var c net.Conn
			select {
			case c = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("no accepted conn")
			}
			defer c.Close()
			want := tt.want
			if want == "" {
				want = conn.LocalAddr().String()
			}
			if got := c.RemoteAddr().String(); got != want {
				t.Fatalf("RemoteAddr = %s, want %s", got, want)
			}
		})
	}
}

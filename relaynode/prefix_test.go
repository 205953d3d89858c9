package relaynode_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// dualRelay is a relay served on 127.0.0.1 (Addr) and on ::1 (Addr6).
type dualRelay struct {
	*relaytest.Relay
	Addr6 string
}

// startDual starts a relay for cfg on both loopback addresses. It skips
// the test if ::1 cannot be bound.
func startDual(t *testing.T, cfg relaynode.Config) *dualRelay {
	t.Helper()
	r := relaytest.Start(t, cfg)
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Node.Serve(ln) }()
	t.Cleanup(func() {
		r.Close()
		<-served
	})
	return &dualRelay{Relay: r, Addr6: ln.Addr().String()}
}

// rawOpen sends one raw request to addr and returns the response status,
// leaving the connection open (a stream, a pending dial) until the test
// ends.
func rawOpen(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp.StatusCode
}

// xff returns the X-Forwarded-For header line naming addr.
func xff(addr string) string { return "X-Forwarded-For: " + addr }

// TestPrefixGroupsRegistrations checks that the per-client registration
// cap counts by prefix: the addresses of one IPv6 /64 share a budget, the
// next /64 has its own, an IPv4-mapped address counts as its IPv4 address,
// and 127.0.0.1 and ::1, the two peers a test really has, are apart.
func TestPrefixGroupsRegistrations(t *testing.T) {
	r := startDual(t, relaynode.Config{
		MaxRegistrationsPerIP: 2,
		TrustedProxies:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	n := 0
	listen := func(addr string, headers ...string) int {
		n++
		return rawOpen(t, addr, relaytest.Request("POST", "/v1/listen/svc"+strings.Repeat("x", n), headers...))
	}
	for _, tt := range []struct {
		name   string
		addr   string
		header string
		want   int
	}{
		{"first of a /64", r.Addr, xff("2001:db8::1"), 200},
		{"second of the /64", r.Addr, xff("2001:db8::2"), 200},
		{"third of the /64", r.Addr, xff("2001:db8::ffff:1"), 429},
		{"next /64", r.Addr, xff("2001:db8:0:1::1"), 200},
		{"IPv4", r.Addr, xff("192.0.2.7"), 200},
		{"IPv4-mapped, same address", r.Addr, xff("::ffff:192.0.2.7"), 200},
		{"IPv4 again", r.Addr, xff("192.0.2.7"), 429},
		{"IPv4 neighbour (/32)", r.Addr, xff("192.0.2.8"), 200},
		{"127.0.0.1 peer", r.Addr, "", 200},
		{"127.0.0.1 peer again", r.Addr, "", 200},
		{"127.0.0.1 peer, over", r.Addr, "", 429},
		{"::1 peer", r.Addr6, "", 200},
	} {
		var h []string
		if tt.header != "" {
			h = append(h, tt.header)
		}
		if got := listen(tt.addr, h...); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestPrefixGroupsDialRate checks that the dial rate's bucket is shared by
// a prefix: a second address of the /64 finds it empty, another /64 and
// the ::1 peer have their own.
func TestPrefixGroupsDialRate(t *testing.T) {
	r := startDual(t, relaynode.Config{
		DialRate: 0.001, DialBurst: 1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	ln, err := endpoints.ListenRelay("tcp", "svc", r.Addr6)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tt := range []struct {
		name   string
		addr   string
		header string
		want   int
	}{
		{"first of a /64", r.Addr, xff("2001:db8::1"), 101},
		{"other address of the /64", r.Addr, xff("2001:db8::2"), 429},
		{"next /64", r.Addr, xff("2001:db8:0:1::1"), 101},
		{"127.0.0.1 peer", r.Addr, "", 101},
		{"127.0.0.1 peer again", r.Addr, "", 429},
		{"::1 peer", r.Addr6, "", 101},
	} {
		h := []string{relaytest.UpgradeHeaders}
		if tt.header != "" {
			h = append(h, tt.header)
		}
		if got := rawOpen(t, tt.addr, relaytest.Request("POST", "/v1/dial/svc", h...)); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestPrefixGroupsPending checks the per-client cap on dials waiting for a
// callback: a server that never calls back cannot be dialled past it from
// one /64, while another /64 still can.
func TestPrefixGroupsPending(t *testing.T) {
	r := startDual(t, relaynode.Config{
		MaxPendingPerIP: 2,
		TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	sse, _ := openStream(t, r.Addr6, "never")
	if _, err := sse.Next(); err != nil { // ready; then it never calls back
		t.Fatal(err)
	}
	dial := func(header string) chan int {
		out := make(chan int, 1)
		go func() {
			c, err := net.Dial("tcp", r.Addr)
			if err != nil {
				out <- 0
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, relaytest.Request("POST", "/v1/dial/never", relaytest.UpgradeHeaders, header))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				out <- -1 // closed by the test while pending
				return
			}
			out <- resp.StatusCode
		}()
		return out
	}
	held := []chan int{dial(xff("2001:db8::1")), dial(xff("2001:db8::2"))}
	relaytest.Eventually(t, 5*time.Second, func() bool {
		st, err := r.Node.Status(t.Context())
		return err == nil && st.PendingDials == 2
	}, "2 dials pending")
	if got := <-dial(xff("2001:db8::3")); got != http.StatusTooManyRequests {
		t.Fatalf("third dial from the /64: %d, want 429", got)
	}
	other := dial(xff("2001:db8:0:1::1"))
	relaytest.Eventually(t, 5*time.Second, func() bool {
		st, err := r.Node.Status(t.Context())
		return err == nil && st.PendingDials == 3
	}, "the other /64's dial pending")
	r.Close() // answers the pending dials
	for _, ch := range append(held, other) {
		if got := <-ch; got == http.StatusTooManyRequests {
			t.Fatalf("a dial within the cap got 429")
		}
	}
}

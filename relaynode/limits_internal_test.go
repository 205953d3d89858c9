package relaynode

import (
	"crypto/tls"
	"net/netip"
	"sync"
	"testing"

	"github.com/clusterlink-relay/relay/actors"
)

func TestKeyOf(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		v4, v6 int
		want   string
	}{
		{"127.0.0.1", 32, 64, "127.0.0.1/32"},
		{"192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"::ffff:192.0.2.77", 32, 64, "192.0.2.77/32"}, // IPv4-mapped counts as IPv4
		{"::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"::1", 32, 64, "::/64"},
		{"::1", 32, 128, "::1/128"},
		{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", 32, 64, "2001:db8:1:3::/64"},
		{"2001:db8:1:2:3:4:5:6", 32, 48, "2001:db8:1::/48"},
		{"fe80::1%eth0", 32, 64, "fe80::/64"}, // the zone is dropped
	} {
		got := keyOf(netip.MustParseAddr(tt.addr), tt.v4, tt.v6)
		if got.String() != tt.want {
			t.Errorf("keyOf(%s, %d, %d) = %s, want %s", tt.addr, tt.v4, tt.v6, got, tt.want)
		}
	}
	if k := keyOf(netip.Addr{}, 32, 64); k.IsValid() {
		t.Errorf("keyOf(zero) = %v, want the zero key", k)
	}
	e := newEdge(&Config{IPv4Prefix: 32, IPv6Prefix: 64, RateLimitBuckets: 8, NegativeCacheSize: 8})
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8::1]:1000", "[2001:db8::2]:2000"},
		{"127.0.0.1:1", "[::ffff:127.0.0.1]:2"},
		{"garbage", "also garbage"},
	} {
		if e.key(tt.a) != e.key(tt.b) {
			t.Errorf("key(%s) = %v, key(%s) = %v: want one key", tt.a, e.key(tt.a), tt.b, e.key(tt.b))
		}
	}
}

// TestAdmitDialConcurrent checks that concurrent first dials of one client
// share one bucket: with a burst of 2 and no refill to speak of, exactly 2
// of 8 simultaneous admits pass, for each of many fresh clients. (Without
// the lock, two first admits could each create a bucket and pass 4.)
func TestAdmitDialConcurrent(t *testing.T) {
	cfg := Config{DialRate: 1e-6, DialBurst: 2, RateLimitBuckets: 4096}
	cfg.setDefaults()
	engine, err := actors.NewEngine(cfg.engineConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	e := newEdge(&cfg)
	e.nameUp("svc")
	const clients, admits, burst = 2000, 8, 2
	for i := range clients {
		k := keyOf(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32, 64)
		var wg sync.WaitGroup
		var mu sync.Mutex
		passed, limited := 0, 0
		start := make(chan struct{})
		for range admits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rf := e.admitDial(k, "svc", engine)
				mu.Lock()
				defer mu.Unlock()
				switch rf {
				case nil:
					passed++
					e.release(k)
				case refuseDialRate:
					limited++
				default:
					t.Errorf("refusal %v", rf)
				}
			}()
		}
		close(start)
		wg.Wait()
		if passed != burst || limited != admits-burst {
			t.Fatalf("client %d: %d admitted, %d over the rate; want %d and %d", i, passed, limited, burst, admits-burst)
		}
	}
}

// TestAdmitWaitingSlots checks that dials and parks share a client's
// waiting slots, and that releasing one frees it.
func TestAdmitWaitingSlots(t *testing.T) {
	cfg := Config{MaxPendingPerIP: 3, DialRate: -1}
	cfg.setDefaults()
	engine, err := actors.NewEngine(cfg.engineConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	e := newEdge(&cfg)
	e.nameUp("svc")
	a := e.key("[2001:db8::1]:1")
	b := e.key("[2001:db8::2]:1") // the same /64
	c := e.key("[2001:db8:0:1::1]:1")
	for _, step := range []struct {
		name string
		rf   *actors.Refusal
		want *actors.Refusal
	}{
		{"dial a", e.admitDial(a, "svc", engine), nil},
		{"park b", e.admitPark(b, engine), nil},
		{"dial b", e.admitDial(b, "svc", engine), nil},
		{"park a, over", e.admitPark(a, engine), refuseTooManyParkedIP},
		{"dial b, over", e.admitDial(b, "svc", engine), refuseTooManyPendingIP},
		{"dial c", e.admitDial(c, "svc", engine), nil},
	} {
		if step.rf != step.want {
			t.Fatalf("%s: %v, want %v", step.name, step.rf, step.want)
		}
	}
	if rf := e.admitDial(b, "nobody", engine); rf != refuseUnknownNameCache {
		t.Fatalf("dial over the budget to an unknown name: %v, want 404", rf)
	}
	e.release(a)
	if rf := e.admitDial(b, "svc", engine); rf != nil {
		t.Fatalf("dial after a release: %v", rf)
	}
}

func TestConfigClone(t *testing.T) {
	orig := Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		TLSConfig:      &tls.Config{ServerName: "a"},
		DialRate:       7,
	}
	c := orig.Clone()
	orig.TrustedProxies[0] = netip.MustParsePrefix("192.0.2.0/24")
	orig.TLSConfig.ServerName = "b"
	if got := c.TrustedProxies[0].String(); got != "10.0.0.0/8" {
		t.Errorf("clone's TrustedProxies[0] = %s after the original changed, want 10.0.0.0/8", got)
	}
	if c.TLSConfig.ServerName != "a" {
		t.Errorf("clone's TLSConfig.ServerName = %q, want a", c.TLSConfig.ServerName)
	}
	if c.DialRate != 7 {
		t.Errorf("clone's DialRate = %v", c.DialRate)
	}
	var zero Config
	if z := zero.Clone(); z.TrustedProxies != nil || z.TLSConfig != nil {
		t.Errorf("zero Config's clone: %+v", z)
	}

	// New keeps its own copy: the caller's slice may change afterwards.
	cfg := Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cfg.TrustedProxies[0] = netip.MustParsePrefix("127.0.0.0/8")
	if n.trusted(netip.MustParseAddr("127.0.0.1")) || !n.trusted(netip.MustParseAddr("10.1.2.3")) {
		t.Fatal("the node follows a change to the caller's TrustedProxies")
	}
}

// TestWithDefaults checks that WithDefaults fills the zero fields, keeps
// the set ones, and that -dial-burst follows DialRate unless set.
func TestWithDefaults(t *testing.T) {
	d := Config{}.WithDefaults()
	if d.DialRate != 20000 || d.DialBurst != 40000 || d.EventQueue != 64 || d.IPv6Prefix != 64 || d.IPv4Prefix != 32 {
		t.Fatalf("zero Config's defaults: rate %v burst %d queue %d prefixes %d/%d", d.DialRate, d.DialBurst, d.EventQueue, d.IPv4Prefix, d.IPv6Prefix)
	}
	for _, tt := range []struct {
		rate  float64
		burst int
		want  int
	}{
		{1, 0, 2}, {0.5, 0, 2}, {100, 0, 200}, {100, 7, 7}, {-1, 0, 2},
	} {
		got := Config{DialRate: tt.rate, DialBurst: tt.burst}.WithDefaults().DialBurst
		if got != tt.want {
			t.Errorf("DialRate %v DialBurst %d: burst %d, want %d", tt.rate, tt.burst, got, tt.want)
		}
	}
}

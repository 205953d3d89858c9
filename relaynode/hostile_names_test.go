package relaynode_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

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
				a := relaytest.Do(r.Addr, relaytest.Request("POST", route+strings.Repeat("a", size), relaytest.UpgradeHeaders), bound)
				want := a.Status == http.StatusBadRequest ||
					(size > 8<<10 && a.Status == http.StatusRequestHeaderFieldsTooLarge)
				if !want {
					t.Errorf("POST %s<%d bytes>: %v, want 400 (or 431 past the header cap)", route, size, a)
				}
				tally.add(fmt.Sprintf("%d", a.Status))
			}
		}
		// A 64 KiB client name, and bad client names, on a dial.
		for _, client := range []string{strings.Repeat("c", 64<<10), strings.Repeat("c", wire.MaxNameLen+1), "a/b", "caf\xc3\xa9", "-a", "a b"} {
			a := relaytest.Do(r.Addr, relaytest.Request("POST", wire.PathDial+"x", relaytest.UpgradeHeaders, wire.HeaderClientName+": "+client), bound)
			if a.Status != http.StatusBadRequest && a.Status != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("client name of %d bytes %.12q: %v, want 400 or 431", len(client), client, a)
			}
			tally.add(fmt.Sprintf("%d", a.Status))
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
				a := relaytest.Do(r.Addr, relaytest.Request("POST", route+name, relaytest.UpgradeHeaders), bound)
				if a.Status != http.StatusBadRequest {
					t.Errorf("POST %s%q: %v, want 400", route, name, a)
				}
				tally.add(fmt.Sprintf("%d %s", a.Status, a.Reason))
			}
		}
		// Not a name's route at all.
		for _, path := range []string{"//v1/dial/x", "/v1//dial/x", "/V1/dial/x", "/v1/dial"} {
			a := relaytest.Do(r.Addr, relaytest.Request("POST", path, relaytest.UpgradeHeaders), bound)
			if a.Status != http.StatusNotFound {
				t.Errorf("POST %s: %v, want 404", path, a)
			}
			tally.add(fmt.Sprintf("%d %s", a.Status, a.Reason))
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
			ln net.Listener
			*relaytest.Server
		}
		servers := make(map[string]server, len(names))
		for _, name := range names {
			ln, err := endpoints.ListenRelay("tcp", name, r.URL)
			if err != nil {
				t.Fatalf("listen %q: %v", name, err)
			}
			servers[name] = server{ln, relaytest.Serve(t, ln, func(c net.Conn) {
				_ = c.SetDeadline(time.Now().Add(bound))
				_, _ = io.WriteString(c, name+"\n")
			})}
		}
		before := r.Node.Stats()
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
			a := relaytest.Do(r.Addr, relaytest.Request("POST", wire.PathDial+name, relaytest.UpgradeHeaders), bound)
			if a.Status != http.StatusBadRequest {
				t.Errorf("dial %q: %v, want 400", name, a)
			}
		}
		after := r.Node.Stats()
		for _, name := range names {
			s := servers[name]
			if n := s.Accepted(); n != dials {
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

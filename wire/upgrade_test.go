package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

// The heads of docs/PROTOCOL.md's real exchange, byte for byte.
const (
	dialRequest = "POST /v1/dial/echo HTTP/1.1\r\nHost: 127.0.0.1:18182\r\nContent-Length: 0\r\n" +
		"Connection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\nRelay-Client-Name: demo-client\r\n\r\n"
	acceptRequest = "POST /v1/accept/xam2IfnOKDWD_tICvCCsLw HTTP/1.1\r\nHost: 127.0.0.1:18182\r\nContent-Length: 0\r\n" +
		"Connection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\nRelay-Registration: C5-HGe9O9bYtpA122UiEmA\r\n\r\n"
	listenRequest  = "POST /v1/listen/echo HTTP/1.1\r\nHost: 127.0.0.1:18182\r\nContent-Length: 0\r\n\r\n"
	serverResponse = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\n" +
		"Relay-Node: relay-c598be0c\r\nRelay-Client-Name: demo-client\r\nRelay-Client-Addr: 127.0.0.1:49228\r\n\r\n"
	clientResponse = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\n" +
		"Relay-Node: relay-c598be0c\r\n\r\n"
)

func TestAppendUpgradeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"dial", wire.AppendUpgradeRequest(nil, "127.0.0.1:18182", wire.PathDial+"echo",
			wire.HeaderClientName, "demo-client", "Authorization", ""), dialRequest},
		{"accept", wire.AppendUpgradeRequest(nil, "127.0.0.1:18182", wire.PathAccept+"xam2IfnOKDWD_tICvCCsLw",
			wire.HeaderRegistration, "C5-HGe9O9bYtpA122UiEmA"), acceptRequest},
		{"listen", wire.AppendRequest(nil, "127.0.0.1:18182", wire.PathListen+"echo",
			wire.HeaderRegistration, "", "Authorization", ""), listenRequest},
		{"server 101", wire.AppendUpgradeResponse(nil, "relay-c598be0c",
			wire.HeaderClientName, "demo-client", wire.HeaderClientAddr, "127.0.0.1:49228"), serverResponse},
		{"client 101", wire.AppendUpgradeResponse(nil, "relay-c598be0c"), clientResponse},
		{"appends", wire.AppendUpgradeResponse([]byte("x"), "n"), "xHTTP/1.1 101 Switching Protocols\r\n" +
			"Connection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\nRelay-Node: n\r\n\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseUpgradeResponse(t *testing.T) {
	r, n, err := wire.ParseUpgradeResponse([]byte(serverResponse + "HELLO"))
	want := wire.UpgradeResponse{Node: "relay-c598be0c", ClientName: "demo-client", ClientAddr: "127.0.0.1:49228"}
	if err != nil || n != len(serverResponse) || r != want {
		t.Fatalf("got %+v, %d, %v; want %+v, %d", r, n, err, want, len(serverResponse))
	}
	const up = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: clusterlink-relay/1\r\n"
	for _, tc := range []struct {
		name, in string
		want     error // nil: parses
	}{
		{"any case, bare LF", "HTTP/1.1 101\nupgrade:  CLUSTERLINK-relay/1 \n\n", nil},
		{"no reason", "HTTP/1.1 101\r\nUpgrade: clusterlink-relay/1\r\n\r\n", nil},
		{"1010", "HTTP/1.1 1010 Odd\r\n\r\n", wire.ErrNotSwitching},
		{"refusal", "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc", wire.ErrNotSwitching},
		{"HTTP/1.0", "HTTP/1.0 101 Switching Protocols\r\nUpgrade: clusterlink-relay/1\r\n\r\n", wire.ErrNotSwitching},
		{"garbage", "garbage\r\n\r\n", wire.ErrNotSwitching},
		{"no Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", wire.ErrBadUpgrade},
		{"websocket", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", wire.ErrBadUpgrade},
		{"no colon", up + "garbage\r\n\r\n", wire.ErrBadUpgrade},
		{"empty name", up + ": v\r\n\r\n", wire.ErrBadUpgrade},
		{"space in name", up + "X Y: v\r\n\r\n", wire.ErrBadUpgrade},
		{"long line", up + "X: " + strings.Repeat("a", wire.MaxUpgradeLine) + "\r\n\r\n", wire.ErrHeadTooLarge},
		{"long line, cut", up + "X: " + strings.Repeat("a", wire.MaxUpgradeLine), wire.ErrHeadTooLarge},
		{"endless head", up + strings.Repeat("X: "+strings.Repeat("b", 200)+"\r\n", 100), wire.ErrHeadTooLarge},
		{"cut", up, wire.ErrShortHead},
		{"empty", "", wire.ErrShortHead},
	} {
		_, _, err := wire.ParseUpgradeResponse([]byte(tc.in))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A head of exactly MaxUpgradeHead bytes is taken; one byte more is not.
	line := "X: " + strings.Repeat("a", 1000) + "\r\n"
	exact := up
	for wire.MaxUpgradeHead-len(exact) >= 2*len(line) {
		exact += line
	}
	exact += "X: " + strings.Repeat("a", wire.MaxUpgradeHead-len(exact)-len("X: \r\n\r\n")) + "\r\n\r\n"
	if len(exact) != wire.MaxUpgradeHead {
		t.Fatalf("built a head of %d bytes, want %d", len(exact), wire.MaxUpgradeHead)
	}
	if _, n, err := wire.ParseUpgradeResponse([]byte(exact)); err != nil || n != len(exact) {
		t.Errorf("head of MaxUpgradeHead bytes: %d, %v", n, err)
	}
	over := exact[:len(exact)-4] + "a\r\n\r\n"
	if _, _, err := wire.ParseUpgradeResponse([]byte(over)); !errors.Is(err, wire.ErrHeadTooLarge) {
		t.Errorf("head of MaxUpgradeHead+1 bytes: %v, want ErrHeadTooLarge", err)
	}
}

func TestParseUpgradeRequest(t *testing.T) {
	r, n, err := wire.ParseUpgradeRequest([]byte(acceptRequest + "early"))
	want := wire.UpgradeRequest{Path: "/v1/accept/xam2IfnOKDWD_tICvCCsLw", Host: "127.0.0.1:18182", Registration: "C5-HGe9O9bYtpA122UiEmA"}
	if err != nil || n != len(acceptRequest) || r != want {
		t.Fatalf("got %+v, %d, %v; want %+v, %d", r, n, err, want, len(acceptRequest))
	}
	d := wire.AppendUpgradeRequest(nil, "h:1", "/v1/dial/x", wire.HeaderClientName, "c", "Authorization", "Bearer t")
	r, _, err = wire.ParseUpgradeRequest(d)
	if want := (wire.UpgradeRequest{Path: "/v1/dial/x", Host: "h:1", ClientName: "c", Authorization: "Bearer t"}); err != nil || r != want {
		t.Errorf("dial: %+v, %v; want %+v", r, err, want)
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"listen is no upgrade", listenRequest, wire.ErrBadUpgrade},
		{"GET", strings.Replace(dialRequest, "POST", "GET", 1), wire.ErrBadUpgrade},
		{"HTTP/1.0", strings.Replace(dialRequest, "HTTP/1.1", "HTTP/1.0", 1), wire.ErrBadUpgrade},
		{"relative path", strings.Replace(dialRequest, "/v1", "v1", 1), wire.ErrBadUpgrade},
		{"no Connection", strings.Replace(dialRequest, "Connection: Upgrade\r\n", "", 1), wire.ErrBadUpgrade},
		{"Connection list", strings.Replace(dialRequest, "Connection: Upgrade", "Connection: keep-alive, upgrade", 1), nil},
		{"cut", dialRequest[:40], wire.ErrShortHead},
	} {
		_, _, err := wire.ParseUpgradeRequest([]byte(tc.in))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestUpgradeTruncated cuts every head at every offset: each prefix is
// ErrShortHead, never a parse and never another error, and the whole head
// with bytes behind it parses to the head's length.
func TestUpgradeTruncated(t *testing.T) {
	parsers := map[string]func([]byte) (int, error){
		"response": func(b []byte) (int, error) { _, n, err := wire.ParseUpgradeResponse(b); return n, err },
		"request":  func(b []byte) (int, error) { _, n, err := wire.ParseUpgradeRequest(b); return n, err },
	}
	for _, tc := range []struct{ parser, head string }{
		{"response", serverResponse}, {"response", clientResponse},
		{"response", "HTTP/1.1 101\nUpgrade: clusterlink-relay/1\n\n"},
		{"request", dialRequest}, {"request", acceptRequest},
	} {
		parse := parsers[tc.parser]
		for k := 0; k < len(tc.head); k++ {
			if n, err := parse([]byte(tc.head[:k])); !errors.Is(err, wire.ErrShortHead) {
				t.Fatalf("%s cut at %d of %d: n %d, %v; want ErrShortHead", tc.parser, k, len(tc.head), n, err)
			}
		}
		if n, err := parse([]byte(tc.head + "raw bytes\r\n\r\n")); err != nil || n != len(tc.head) {
			t.Errorf("%s %q: n %d, %v; want %d", tc.parser, tc.head, n, err, len(tc.head))
		}
	}
}

func TestAppendUpgradeAllocs(t *testing.T) {
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		buf = wire.AppendUpgradeResponse(buf[:0], "node", wire.HeaderClientName, "c", wire.HeaderClientAddr, "127.0.0.1:1")
		buf = wire.AppendUpgradeRequest(buf[:0], "h:1", "/v1/dial/x", wire.HeaderClientName, "c")
	}); n != 0 {
		t.Errorf("%v allocations per append, want 0", n)
	}
}

// upgradeKind returns the upgrade parsers' sentinel that err matches, or
// nil.
func upgradeKind(err error) error {
	for _, e := range []error{wire.ErrShortHead, wire.ErrHeadTooLarge, wire.ErrNotSwitching, wire.ErrBadUpgrade} {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

// FuzzParseUpgradeResponse checks the 101 parser on any input: it never
// panics, it returns only its own errors, a parse takes at most the input
// and at most MaxUpgradeHead, each prefix of a parsed head is
// ErrShortHead, and the kept fields survive an append and a parse again.
func FuzzParseUpgradeResponse(f *testing.F) {
	f.Add([]byte(serverResponse + "HELLO"))
	f.Add([]byte(clientResponse))
	f.Add([]byte("HTTP/1.1 101\nUpgrade: clusterlink-relay/1\n\n"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nRelay-Node: n\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 \r\nUpgrade: clusterlink-relay/1\r\nRelay-Client-Name:\ta\rb \r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := wire.ParseUpgradeResponse(b)
		if err != nil {
			if upgradeKind(err) == nil {
				t.Fatalf("error %v is none of the parser's", err)
			}
			return
		}
		if n <= 0 || n > len(b) || n > wire.MaxUpgradeHead {
			t.Fatalf("n %d for %d bytes", n, len(b))
		}
		if _, _, err := wire.ParseUpgradeResponse(b[:n-1]); !errors.Is(err, wire.ErrShortHead) {
			t.Fatalf("head cut by one byte: %v, want ErrShortHead", err)
		}
		again := wire.AppendUpgradeResponse(nil, r.Node, wire.HeaderClientName, r.ClientName, wire.HeaderClientAddr, r.ClientAddr)
		r2, n2, err := wire.ParseUpgradeResponse(again)
		if len(again) > wire.MaxUpgradeHead {
			return
		}
		if err != nil || n2 != len(again) || r2 != r {
			t.Fatalf("round trip: %+v, %d, %v; want %+v", r2, n2, err, r)
		}
	})
}

// FuzzParseUpgradeRequest is FuzzParseUpgradeResponse for requests.
func FuzzParseUpgradeRequest(f *testing.F) {
	f.Add([]byte(dialRequest))
	f.Add([]byte(acceptRequest + "early"))
	f.Add([]byte(listenRequest))
	f.Add([]byte("POST /v1/park/x HTTP/1.1\nconnection: a, UPGRADE\nupgrade: clusterlink-relay/1\nAuthorization: Bearer x\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := wire.ParseUpgradeRequest(b)
		if err != nil {
			if k := upgradeKind(err); k == nil || k == wire.ErrNotSwitching {
				t.Fatalf("error %v is none of the request parser's", err)
			}
			return
		}
		if n <= 0 || n > len(b) || n > wire.MaxUpgradeHead {
			t.Fatalf("n %d for %d bytes", n, len(b))
		}
		if _, _, err := wire.ParseUpgradeRequest(b[:n-1]); !errors.Is(err, wire.ErrShortHead) {
			t.Fatalf("head cut by one byte: %v, want ErrShortHead", err)
		}
		again := wire.AppendUpgradeRequest(nil, r.Host, r.Path, wire.HeaderClientName, r.ClientName,
			wire.HeaderRegistration, r.Registration, "Authorization", r.Authorization)
		if len(again) > wire.MaxUpgradeHead {
			return
		}
		r2, n2, err := wire.ParseUpgradeRequest(again)
		if err != nil || n2 != len(again) || r2 != r {
			t.Fatalf("round trip: %+v, %d, %v; want %+v", r2, n2, err, r)
		}
	})
}

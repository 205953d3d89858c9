package wire_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

func TestParseRouteValid(t *testing.T) {
	tok := validToken(t)
	name128 := strings.Repeat("n", wire.MaxNameLen)
	tests := []struct {
		name      string
		path      string
		wantRoute wire.Route
		wantArg   string
	}{
		{"listen", wire.PathListen + "echo", wire.RouteListen, "echo"},
		{"listen all classes", wire.PathListen + "svc_A.b-9", wire.RouteListen, "svc_A.b-9"},
		{"listen 128 bytes", wire.PathListen + name128, wire.RouteListen, name128},
		{"listen single char", wire.PathListen + "x", wire.RouteListen, "x"},
		{"listen leading underscore", wire.PathListen + "_x", wire.RouteListen, "_x"},
		{"listen leading digit", wire.PathListen + "0x", wire.RouteListen, "0x"},
		{"dial", wire.PathDial + "echo.server", wire.RouteDial, "echo.server"},
		{"dial trailing dot", wire.PathDial + "a.", wire.RouteDial, "a."},
		{"accept", wire.PathAccept + tok, wire.RouteAccept, tok},
		{"park", wire.PathPark + "echo", wire.RoutePark, "echo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route, arg, err := wire.ParseRoute(http.MethodPost, tt.path)
			if err != nil {
				t.Fatalf("ParseRoute(POST, %q): %v", tt.path, err)
			}
			if route != tt.wantRoute || arg != tt.wantArg {
				t.Fatalf("ParseRoute(POST, %q) = %v, %q; want %v, %q", tt.path, route, arg, tt.wantRoute, tt.wantArg)
			}
		})
	}
}

func TestParseRouteErrors(t *testing.T) {
	tok := validToken(t)
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{"GET listen", http.MethodGet, wire.PathListen + "echo", http.StatusMethodNotAllowed},
		{"PUT dial", http.MethodPut, wire.PathDial + "echo", http.StatusMethodNotAllowed},
		{"GET accept", http.MethodGet, wire.PathAccept + tok, http.StatusMethodNotAllowed},
		{"lowercase post", "post", wire.PathListen + "echo", http.StatusMethodNotAllowed},
		{"empty method", "", wire.PathDial + "echo", http.StatusMethodNotAllowed},
		{"root", http.MethodPost, "/", http.StatusNotFound},
		{"empty path", http.MethodPost, "", http.StatusNotFound},
		{"no trailing slash", http.MethodPost, "/v1/listen", http.StatusNotFound},
		{"unknown verb", http.MethodPost, "/v1/connect/echo", http.StatusNotFound},
		{"other version", http.MethodPost, "/v2/listen/echo", http.StatusNotFound},
		{"double slash", http.MethodPost, "//v1/listen/echo", http.StatusNotFound},
		{"uppercase", http.MethodPost, "/V1/LISTEN/echo", http.StatusNotFound},
		{"unknown path wrong method", http.MethodGet, "/nope", http.StatusNotFound},
		{"empty name", http.MethodPost, wire.PathListen, http.StatusBadRequest},
		{"empty dial name", http.MethodPost, wire.PathDial, http.StatusBadRequest},
		{"129 byte name", http.MethodPost, wire.PathListen + strings.Repeat("a", wire.MaxNameLen+1), http.StatusBadRequest},
		{"64KiB name", http.MethodPost, wire.PathDial + strings.Repeat("a", 64<<10), http.StatusBadRequest},
		{"NUL", http.MethodPost, wire.PathListen + "a\x00b", http.StatusBadRequest},
		{"control", http.MethodPost, wire.PathListen + "a\x7f", http.StatusBadRequest},
		{"slash", http.MethodPost, wire.PathListen + "a/b", http.StatusBadRequest},
		{"trailing slash", http.MethodPost, wire.PathDial + "a/", http.StatusBadRequest},
		{"space", http.MethodPost, wire.PathDial + "a b", http.StatusBadRequest},
		{"leading dot", http.MethodPost, wire.PathListen + ".a", http.StatusBadRequest},
		{"dot dot", http.MethodPost, wire.PathListen + "..", http.StatusBadRequest},
		{"leading dash", http.MethodPost, wire.PathDial + "-a", http.StatusBadRequest},
		{"UTF-8 letter", http.MethodPost, wire.PathListen + "café", http.StatusBadRequest},
		{"percent escape", http.MethodPost, wire.PathListen + "a%20b", http.StatusBadRequest},
		{"query", http.MethodPost, wire.PathListen + "a?b=c", http.StatusBadRequest},
		{"empty token", http.MethodPost, wire.PathAccept, http.StatusBadRequest},
		{"short token", http.MethodPost, wire.PathAccept + tok[:21], http.StatusBadRequest},
		{"long token", http.MethodPost, wire.PathAccept + tok + "A", http.StatusBadRequest},
		{"padded token", http.MethodPost, wire.PathAccept + tok + "==", http.StatusBadRequest},
		{"token bad char", http.MethodPost, wire.PathAccept + "+" + tok[1:], http.StatusBadRequest},
		{"zero token", http.MethodPost, wire.PathAccept + "AAAAAAAAAAAAAAAAAAAAAA", http.StatusBadRequest},
		{"non-canonical token", http.MethodPost, wire.PathAccept + nonCanonical(t, tok), http.StatusBadRequest},
		{"token trailing slash", http.MethodPost, wire.PathAccept + tok + "/", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route, arg, err := wire.ParseRoute(tt.method, tt.path)
			if err == nil {
				t.Fatalf("ParseRoute(%q, %q) = %v, %q, nil; want status %d", tt.method, tt.path, route, arg, tt.wantStatus)
			}
			var re *wire.RouteError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRoute(%q, %q) error %T %v is not a *RouteError", tt.method, tt.path, err, err)
			}
			if re.Status != tt.wantStatus {
				t.Fatalf("ParseRoute(%q, %q) status %d (%v), want %d", tt.method, tt.path, re.Status, err, tt.wantStatus)
			}
			if re.Reason == "" {
				t.Errorf("ParseRoute(%q, %q): empty Reason", tt.method, tt.path)
			}
			if arg != "" {
				t.Errorf("ParseRoute(%q, %q) returned arg %q with an error", tt.method, tt.path, arg)
			}
			if tt.wantStatus == http.StatusNotFound && route != wire.RouteUnknown {
				t.Errorf("ParseRoute(%q, %q) route = %v with 404, want unknown", tt.method, tt.path, route)
			}
		})
	}
}

func TestRouteErrorString(t *testing.T) {
	err := &wire.RouteError{Status: http.StatusNotFound, Reason: "no such route"}
	if got, want := err.Error(), "wire: 404 no such route"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestRouteString(t *testing.T) {
	tests := []struct {
		r    wire.Route
		want string
	}{
		{wire.RouteUnknown, "unknown"},
		{wire.RouteListen, "listen"},
		{wire.RouteDial, "dial"},
		{wire.RouteAccept, "accept"},
		{wire.RoutePark, "park"},
		{wire.Route(99), "unknown"},
		{wire.Route(-1), "unknown"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Route(%d).String() = %q, want %q", int(tt.r), got, tt.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "echo", true},
		{"single char", "a", true},
		{"digits", "0123456789", true},
		{"all classes", "Ab9._-", true},
		{"leading underscore", "_svc", true},
		{"inner dot and dash", "a.b-c", true},
		{"trailing dot", "a.", true},
		{"exactly 128 bytes", strings.Repeat("a", wire.MaxNameLen), true},
		{"empty", "", false},
		{"129 bytes", strings.Repeat("a", wire.MaxNameLen+1), false},
		{"64 KiB", strings.Repeat("a", 64<<10), false},
		{"leading dot", ".a", false},
		{"leading dash", "-a", false},
		{"only dot", ".", false},
		{"NUL", "a\x00", false},
		{"tab", "a\tb", false},
		{"DEL", "a\x7f", false},
		{"slash", "a/b", false},
		{"backslash", `a\b`, false},
		{"space", "a b", false},
		{"colon", "a:b", false},
		{"percent", "a%2F", false},
		{"UTF-8 letter", "é", false},
		{"UTF-8 inside", "caf\u00e9", false},
		{"high byte", "a\xff", false},
		{"129 bytes bad last", strings.Repeat("a", wire.MaxNameLen) + "/", false},
		{"128 bytes bad last", strings.Repeat("a", wire.MaxNameLen-1) + "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.CheckName(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckName(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckName(%q) = nil, want error", tt.in)
			}
			if !errors.Is(err, wire.ErrBadName) {
				t.Fatalf("CheckName(%q) = %v, does not wrap ErrBadName", tt.in, err)
			}
		})
	}
}

// TestCheckNameEveryByte checks each single-byte name against the alphabet
// in CheckName's documentation.
func TestCheckNameEveryByte(t *testing.T) {
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
	for c := range 256 {
		ok := strings.IndexByte(allowed, byte(c)) >= 0
		inner := "a" + string([]byte{byte(c)}) + "a"
		if err := wire.CheckName(inner); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, allowed = %v", inner, err, ok)
		}
		first := string([]byte{byte(c)})
		okFirst := ok && c != '.' && c != '-'
		if err := wire.CheckName(first); (err == nil) != okFirst {
			t.Errorf("CheckName(%q) = %v, allowed = %v", first, err, okFirst)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	tok := wire.NewToken().String()
	f.Add(http.MethodPost, wire.PathListen+"echo")
	f.Add(http.MethodPost, wire.PathDial+"echo.server_1")
	f.Add(http.MethodPost, wire.PathAccept+tok)
	f.Add(http.MethodPost, wire.PathAccept+"AAAAAAAAAAAAAAAAAAAAAA")
	f.Add(http.MethodGet, wire.PathListen+"echo")
	f.Add(http.MethodPost, "/v1/listen/a/b")
	f.Add(http.MethodPost, "/")
	f.Fuzz(func(t *testing.T, method, path string) {
		route, arg, err := wire.ParseRoute(method, path)
		if err != nil {
			var re *wire.RouteError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRoute(%q, %q) error %T is not a *RouteError", method, path, err)
			}
			switch re.Status {
			case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusBadRequest:
			default:
				t.Fatalf("ParseRoute(%q, %q) status %d", method, path, re.Status)
			}
			if re.Status != http.StatusNotFound && method == http.MethodPost && route == wire.RouteUnknown {
				t.Fatalf("ParseRoute(%q, %q) status %d without a route", method, path, re.Status)
			}
			return
		}
		if method != http.MethodPost {
			t.Fatalf("ParseRoute(%q, %q) accepted method %q", method, path, method)
		}
		switch route {
		case wire.RouteListen, wire.RouteDial, wire.RoutePark:
			prefix := map[wire.Route]string{wire.RouteListen: wire.PathListen, wire.RouteDial: wire.PathDial, wire.RoutePark: wire.PathPark}[route]
			if path != prefix+arg {
				t.Fatalf("ParseRoute(%q, %q): path != %q + arg %q", method, path, prefix, arg)
			}
			if err := wire.CheckName(arg); err != nil {
				t.Fatalf("ParseRoute(%q, %q) accepted bad name %q: %v", method, path, arg, err)
			}
		case wire.RouteAccept:
			if path != wire.PathAccept+arg {
				t.Fatalf("ParseRoute(%q, %q): path != %q + arg %q", method, path, wire.PathAccept, arg)
			}
			if _, err := wire.ParseToken(arg); err != nil {
				t.Fatalf("ParseRoute(%q, %q) accepted bad token %q: %v", method, path, arg, err)
			}
		default:
			t.Fatalf("ParseRoute(%q, %q) = %v, nil", method, path, route)
		}
	})
}

package relaynode_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// headerSlack is what net/http adds to Server.MaxHeaderBytes before it
// refuses a request's head (its bufio slop): the relay accepts a request
// line and headers of up to MaxHeaderBytes + headerSlack bytes, as
// docs/OPERATIONS.md states.
const headerSlack = 4096

// requestOfSize returns a request to an unknown route whose head (request
// line, headers and the blank line) is exactly size bytes.
func requestOfSize(t *testing.T, size int) string {
	t.Helper()
	base := relaytest.Request("POST", "/v1/nowhere", "X-Pad: ")
	pad := size - len(base)
	if pad < 0 {
		t.Fatalf("size %d below the bare request's %d", size, len(base))
	}
	r := relaytest.Request("POST", "/v1/nowhere", "X-Pad: "+strings.Repeat("a", pad))
	if len(r) != size {
		t.Fatalf("built %d bytes, want %d", len(r), size)
	}
	return r
}

// TestHeaderLimitBoundary finds the real header limit at its edge: for the
// default MaxHeaderBytes and a custom one, a head of exactly
// MaxHeaderBytes + 4096 bytes is read (404: no such route) and one byte
// more is refused 431.
func TestHeaderLimitBoundary(t *testing.T) {
	for _, mhb := range []int{0, 2048} {
		r := relaytest.Start(t, relaynode.Config{MaxHeaderBytes: mhb})
		limit := mhb
		if limit == 0 {
			limit = 8192
		}
		accepted := limit + headerSlack
		for _, tc := range []struct {
			size int
			want int
		}{
			{limit, http.StatusNotFound},
			{accepted, http.StatusNotFound},
			{accepted + 1, http.StatusRequestHeaderFieldsTooLarge},
			{accepted + 1024, http.StatusRequestHeaderFieldsTooLarge},
		} {
			a := relaytest.Do(r.Addr, requestOfSize(t, tc.size), 5*time.Second)
			if a.Status != tc.want {
				t.Errorf("MaxHeaderBytes %d: a %d-byte head got %v, want %d", limit, tc.size, a, tc.want)
			}
		}
	}
}

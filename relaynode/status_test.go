package relaynode_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// statusJSON fetches and decodes /status.json.
func statusJSON(t *testing.T, admin string) relaynode.Status {
	t.Helper()
	code, body := get(t, admin+"/status.json")
	if code != http.StatusOK {
		t.Fatalf("/status.json: %d %s", code, body)
	}
	var st relaynode.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	return st
}

// TestStatusVersionUptimeDrainingLimits checks that /status.json and
// /status carry the configured version, the uptime, the draining state
// before and during a drain, and the effective limits: the values given,
// the defaults of the ones left zero, and DialBurst derived from DialRate.
func TestStatusVersionUptimeDrainingLimits(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{
		Version:        "v0.1.0-status.3",
		MaxHeaderBytes: 16 << 10,
		DialRate:       5,
		Limits:         actors.Limits{PairIdleTimeout: 3 * time.Second, EventQueue: 32},
	})
	admin := startAdmin(t, r)

	st := statusJSON(t, admin)
	if st.Version != "v0.1.0-status.3" {
		t.Errorf("version %q", st.Version)
	}
	if d, err := time.ParseDuration(st.Uptime); err != nil || d < 0 || st.Started.IsZero() {
		t.Errorf("uptime %q (%v), started %v", st.Uptime, err, st.Started)
	}
	if st.Draining {
		t.Error("draining before Shutdown")
	}
	got := make(map[string]string, len(st.Limits))
	for _, l := range st.Limits {
		if _, dup := got[l.Name]; dup {
			t.Errorf("limit %s listed twice", l.Name)
		}
		got[l.Name] = l.Value
	}
	want := map[string]string{
		"MaxHeaderBytes": "16384", "DialRate": "5", "DialBurst": "10",
		"PairIdleTimeout": "3s", "EventQueue": "32",
		// defaults
		"Heartbeat": "15s", "CallbackTimeout": "10s", "MaxRegistrations": "10000",
		"MaxRegistrationsPerIP": "100000", "MaxPendingPerIP": "2048", "MaxPairs": "50000", // relaytest sets the first
		"IPv6Prefix": "64", "IPv4Prefix": "32", "CopyBuffer": "32768", "Tombstones": "4096",
		"UpgradeWriteTimeout": "5s", "PairMaxBytes": "0", "PairMaxDuration": "0s",
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("limit %s = %q, want %q", name, got[name], v)
		}
	}
	for _, notLimit := range []string{"Version", "NodeID", "AuthFile", "TLSCertFile", "MetricsPerName"} {
		if _, ok := got[notLimit]; ok {
			t.Errorf("%s listed as a limit", notLimit)
		}
	}

	code, page := get(t, admin+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d", code)
	}
	for _, s := range []string{`<code class="version">v0.1.0-status.3</code>`, `<span class="serving">serving</span>`,
		"<td>MaxHeaderBytes</td><td>16384</td>", "<td>DialBurst</td><td>10</td>", " · up "} {
		if !strings.Contains(page, s) {
			t.Errorf("/status lacks %q", s)
		}
	}

	// A live pair keeps the drain going until it ends or ctx does.
	ln, err := endpoints.ListenRelay("tcp", "held", r.URL)
	if err != nil {
		t.Fatal(err)
	}
	relaytest.ServeEcho(t, ln)
	c, err := endpoints.DialTCP("tcp", "held", r.Addr, "s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Node.Shutdown(ctx) }()
	relaytest.Eventually(t, 5*time.Second, func() bool { return statusJSON(t, admin).Draining }, "/status.json not draining during Shutdown")
	if code, page := get(t, admin+"/status"); code != http.StatusOK || !strings.Contains(page, `<span class="draining">draining</span>`) {
		t.Errorf("/status during the drain: %d, lacks the draining mark", code)
	}
	c.Close() // the pair ends, and with it the drain
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the pair closed")
	}
}

// TestStatusDefaultVersion checks that a node without Config.Version
// reports the module's version (or "(devel)"), never nothing.
func TestStatusDefaultVersion(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	admin := startAdmin(t, r)
	if v := statusJSON(t, admin).Version; v == "" {
		t.Fatal("empty version with Config.Version unset, want the module version or (devel)")
	}
}

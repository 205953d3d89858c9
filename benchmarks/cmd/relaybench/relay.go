package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
)

// relayHandle is the relay under test: a Node served in process, or the
// address of a running relaynode.
type relayHandle struct {
	addr    string          // host:port or URL, as dialers and listeners take it
	node    *relaynode.Node // nil for a running relaynode
	served  chan error      // Serve's result (in process)
	metrics string          // URL of the relay's /metrics; "" when unknown
}

// benchConfig returns the configuration of the in-process relays: the
// defaults, except the limits a public relay sets per client IP (every
// bench client is 127.0.0.1, so they would throttle the bench itself) and
// caps raised above what the modes hold. The SSE queue is deep enough for
// 64 concurrent dials to one name, and a warm pool may park up to the
// relay's hard limit.
func benchConfig(log slog.Handler) relaynode.Config {
	return relaynode.Config{
		Logger:                slog.New(log),
		DialRate:              -1,
		MaxRegistrations:      1 << 20,
		MaxRegistrationsPerIP: 1 << 20,
		MaxPending:            1 << 20,
		MaxPendingPerIP:       1 << 20,
		MaxPairs:              1 << 20,
		Limits: actors.Limits{
			MaxPendingPerName: 1 << 16,
			EventQueue:        1024,
			MaxParked:         1024, // any -warm the bench is given
		},
	}
}

// startRelay starts a relay for cfg on 127.0.0.1:0.
func startRelay(cfg relaynode.Config) (*relayHandle, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay listen: %w", err)
	}
	return startRelayOn(cfg, ln)
}

// startRelayOn starts a relay for cfg serving ln, which it closes.
func startRelayOn(cfg relaynode.Config, ln net.Listener) (*relayHandle, error) {
	node, err := relaynode.New(cfg)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("new relay: %w", err)
	}
	r := &relayHandle{addr: ln.Addr().String(), node: node, served: make(chan error, 1)}
	go func() { r.served <- node.Serve(ln) }()
	return r, nil
}

// remoteRelay returns the handle of the running relay at addr, whose admin
// listener, if known, is at admin.
func remoteRelay(addr, admin string) *relayHandle {
	r := &relayHandle{addr: addr}
	if admin != "" {
		if !strings.Contains(admin, "://") {
			admin = "http://" + admin
		}
		r.metrics = strings.TrimSuffix(admin, "/") + "/metrics"
	}
	return r
}

// inProcess reports whether the relay runs in this process.
func (r *relayHandle) inProcess() bool { return r.node != nil }

// live returns the relay's live actors of kind k, or -1 when the relay is
// not in process.
func (r *relayHandle) live(k actors.Kind) int64 {
	if r.node == nil {
		return -1
	}
	return r.node.Stats().Actors.Kinds[k].Live
}

// close closes an in-process relay and waits for its Serve to return.
func (r *relayHandle) close() error {
	if r.node == nil {
		return nil
	}
	r.node.Close()
	if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay serve: %w", err)
	}
	return nil
}

// warmSplices returns how many dials the relay has handed to a parked
// callback (its warm pools) so far: from the engine in process, from the
// running relay's /metrics otherwise, or -1 when unknown.
func (r *relayHandle) warmSplices(ctx context.Context) int64 {
	if r.node != nil {
		var n uint64
		for _, c := range r.node.Stats().Actors.SpliceLatencyWarm.Counts {
			n += c
		}
		return int64(n)
	}
	if r.metrics == "" {
		return -1
	}
	ms, err := scrape(ctx, r.metrics)
	if err != nil {
		return -1
	}
	for _, s := range ms {
		if s.name == "relay_dial_splice_seconds_count" && s.labels["path"] == "warm" {
			return int64(s.value)
		}
	}
	return -1
}

// relayCounters are a relay's own counts of dials by outcome and of
// refusals, read at the end of its use: the failures the bench's clients
// saw, from the relay's side.
type relayCounters struct {
	Relay    string           `json:"relay"` // which relay of the run
	Dials    map[string]int64 `json:"dials,omitempty"`
	Refusals []string         `json:"refusals,omitempty"` // "route status reason: count"
	Error    string           `json:"error,omitempty"`    // why the counters could not be read
}

// counters reads the relay's counters: from the node in process, or from
// the running relay's /metrics.
func (r *relayHandle) counters(ctx context.Context) (relayCounters, error) {
	if r.node != nil {
		st, err := r.node.Status(ctx)
		if err != nil {
			return relayCounters{}, fmt.Errorf("relay status: %w", err)
		}
		rc := relayCounters{Dials: st.Dials}
		for _, rf := range st.Refusals {
			rc.Refusals = append(rc.Refusals, fmt.Sprintf("%s %d %s: %d", rf.Route, rf.Status, rf.Reason, rf.Count))
		}
		return rc, nil
	}
	if r.metrics == "" {
		return relayCounters{}, errors.New("no -admin: the running relay's counters are unknown")
	}
	ms, err := scrape(ctx, r.metrics)
	if err != nil {
		return relayCounters{}, err
	}
	rc := relayCounters{Dials: map[string]int64{}}
	for _, s := range ms {
		switch s.name {
		case "relay_dials_total":
			rc.Dials[s.labels["outcome"]] = int64(s.value)
		case "relay_refusals_total":
			rc.Refusals = append(rc.Refusals, fmt.Sprintf("%s %s %s: %.0f", s.labels["route"], s.labels["status"], s.labels["reason"], s.value))
		}
	}
	return rc, nil
}

// failures sums the dials that did not splice.
func (rc relayCounters) failures() int64 {
	var n int64
	for o, v := range rc.Dials {
		if o != "spliced" {
			n += v
		}
	}
	return n
}

// countingHandler is the slog handler of the in-process relays: it keeps
// the progress line clean by printing nothing, and counts warnings and
// errors, keeping the first, for the report.
type countingHandler struct {
	mu    *sync.Mutex // guards n and first, shared with derived handlers
	n     *int
	first *string
	attrs []slog.Attr
}

// newCountingHandler returns a handler with nothing counted.
func newCountingHandler() *countingHandler {
	return &countingHandler{mu: new(sync.Mutex), n: new(int), first: new(string)}
}

// Enabled admits warnings and errors.
func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle counts r and keeps it if it is the first.
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.n++
	if *h.n == 1 {
		var b strings.Builder
		b.WriteString(r.Message)
		add := func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		*h.first = b.String()
	}
	return nil
}

// WithAttrs returns a handler that adds attrs to the first record kept.
func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)
	return &h2
}

// WithGroup returns h: groups do not matter to a count.
func (h *countingHandler) WithGroup(string) slog.Handler { return h }

// count returns the records counted and the first one.
func (h *countingHandler) count() (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *h.n, *h.first
}

package relaynode

import (
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/clusterlink-relay/relay/wire"
)

// Dial outcomes, the label values of relay_dials_total.
const (
	outcomeSpliced     = "spliced"
	outcomeTimeout     = "timeout"
	outcomeUnknownName = "unknown_name"
	outcomeRefused     = "refused"
	outcomeCancelled   = "cancelled"
)

var outcomes = []string{outcomeSpliced, outcomeTimeout, outcomeUnknownName, outcomeRefused, outcomeCancelled}

// refusalKey is one refusal reason: route, status and reason text, a
// bounded set fixed by the code.
type refusalKey struct {
	Route  string
	Status int
	Reason string
}

// counters are the node's own counts, beside the engine's.
type counters struct {
	dials   [5]atomic.Int64 // by outcomes index, both wires
	v0Dials [5]atomic.Int64 // by outcomes index, the v0 wire's share of dials

	mu       sync.Mutex // guards refusals
	refusals map[refusalKey]int64
}

func (c *counters) dial(outcome string) {
	if i := slices.Index(outcomes, outcome); i >= 0 {
		c.dials[i].Add(1)
	}
}

// dialV0 records a v0 dial: in relay_dials_total, as every dial, and in
// relay_v0_dials_total.
func (c *counters) dialV0(outcome string) {
	if i := slices.Index(outcomes, outcome); i >= 0 {
		c.dials[i].Add(1)
		c.v0Dials[i].Add(1)
	}
}

func (c *counters) refused(k refusalKey) {
	c.mu.Lock()
	if c.refusals == nil {
		c.refusals = make(map[refusalKey]int64)
	}
	c.refusals[k]++
	c.mu.Unlock()
}

// Refusal is one refusal reason with its count.
type Refusal struct {
	Route  string `json:"route"`
	Status int    `json:"status"`
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

func (c *counters) refusalList() []Refusal {
	c.mu.Lock()
	out := make([]Refusal, 0, len(c.refusals))
	for k, n := range c.refusals {
		out = append(out, Refusal{Route: k.Route, Status: k.Status, Reason: k.Reason, Count: n})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Route != out[j].Route {
			return out[i].Route < out[j].Route
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

func (c *counters) dialCounts() map[string]int64 {
	m := make(map[string]int64, len(outcomes))
	for i, o := range outcomes {
		m[o] = c.dials[i].Load()
	}
	return m
}

func (c *counters) v0DialCounts() map[string]int64 {
	m := make(map[string]int64, len(outcomes))
	for i, o := range outcomes {
		m[o] = c.v0Dials[i].Load()
	}
	return m
}

// statusWriter records the status and refusal reason a handler answered,
// for the node's counters. Unwrap lets http.ResponseController reach the
// real writer for Flush, deadlines and Hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
	reason string
	// keepAliveSet says the request's socket got the relay's keepalive
	// when it was accepted (a Listen listener): a hijack sets none.
	keepAliveSet bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// count records one answered request.
func (n *Node) count(route wire.Route, w *statusWriter) {
	if route == wire.RouteDial {
		n.counters.dial(dialOutcome(w.status, http.StatusSwitchingProtocols))
	}
	n.countRefusal(route.String(), w)
}

// dialOutcome names the outcome of a dial answered with status; spliced
// is the status that starts a pair on the dial's wire (101 on v1, 200 on
// v0).
func dialOutcome(status, spliced int) string {
	switch status {
	case spliced:
		return outcomeSpliced
	case http.StatusGatewayTimeout:
		return outcomeTimeout
	case http.StatusNotFound:
		return outcomeUnknownName
	case 0, statusClientGone:
		return outcomeCancelled
	}
	return outcomeRefused
}

// countRefusal records w's answer on route as a refusal if it is one.
func (n *Node) countRefusal(route string, w *statusWriter) {
	if w.status >= 400 && w.status != statusClientGone {
		n.counters.refused(refusalKey{Route: route, Status: w.status, Reason: w.reason})
	}
}

// statusClientGone marks a request whose client left before an answer.
const statusClientGone = 499

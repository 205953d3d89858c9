package relaynode

import (
	"context"
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clusterlink-relay/relay/actors"
)

// AdminHandler returns the operator's handler: /metrics (Prometheus text),
// /healthz (the process is alive), /readyz (serving, not draining),
// /status (an HTML page that refreshes itself) and /status.json (the same
// data). Serve it on a separate, private listener (ServeAdmin): nothing of
// it is reachable through ServeHTTP.
func (n *Node) AdminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n, n.cfg.MetricsPerName),
		// The runtime's and the process's own series (go_*, process_*):
		// heap, goroutines, open fds, the figures capacity planning needs.
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if n.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		if !n.leaseHeld() {
			// Cut off from etcd: this node's names may be gone from the
			// cluster, and its cross-node dials fail.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("no cluster lease\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		st, err := n.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := n.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		if err := statusPage.Execute(w, st); err != nil {
			n.log.Debug("status page", "err", err)
		}
	})
	return mux
}

// ServeAdmin serves AdminHandler on ln, with the node's header timeout,
// until Close. It keeps serving through Shutdown's drain, so that /readyz
// can tell load balancers the node is draining.
func (n *Node) ServeAdmin(ln net.Listener) error {
	srv := &http.Server{
		Handler:           n.AdminHandler(),
		ReadHeaderTimeout: n.cfg.ReadHeaderTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ConnState:         n.connState,
	}
	return n.serve(srv, ln, true)
}

// Status is a snapshot of the node for operators: /status.json.
type Status struct {
	Node          string            `json:"node"`
	Version       string            `json:"version"`
	Started       time.Time         `json:"started"`
	Uptime        string            `json:"uptime"`
	Draining      bool              `json:"draining"`
	Registrations int               `json:"registrations"`
	PendingDials  int64             `json:"pending_dials"`
	Pairs         int64             `json:"pairs"`
	BytesToServer int64             `json:"bytes_to_server"`
	BytesToClient int64             `json:"bytes_to_client"`
	Dials         map[string]int64  `json:"dials"`
	Names         []NameStatus      `json:"names"`
	Refusals      []Refusal         `json:"refusals"`
	Actors        []ActorKindStatus `json:"actors"`
	// Limits are the effective limits, defaults applied, in Config's
	// order.
	Limits []LimitStatus `json:"limits"`
	// Cluster is the node's view of its cluster; absent on one node.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// NameStatus is one registered name on the status page: the sums over
// its group's members.
type NameStatus struct {
	Name          string    `json:"name"`
	Members       int       `json:"members"`
	ClientAddr    string    `json:"client_addr"` // the members' addresses, comma-separated
	Since         time.Time `json:"since"`       // the oldest member's registration
	Queued        int       `json:"queued"`
	Pending       int64     `json:"pending"`
	Pairs         int64     `json:"pairs"`
	BytesToServer int64     `json:"bytes_to_server"`
	BytesToClient int64     `json:"bytes_to_client"`
	// RateToServer and RateToClient are bytes per second over the last
	// full sampling interval (5s; 0 until two samples exist). Reading them
	// changes nothing.
	RateToServer float64 `json:"rate_to_server"`
	RateToClient float64 `json:"rate_to_client"`
}

// ActorKindStatus is one actor kind's figures.
type ActorKindStatus struct {
	Kind      string `json:"kind"`
	Mailbox   string `json:"mailbox"`
	Live      int64  `json:"live"`
	Processed int64  `json:"processed"`
	Queued    int64  `json:"queued"`
}

// Status returns a snapshot of the node, as /status.json serves it.
func (n *Node) Status(ctx context.Context) (Status, error) {
	regs, err := n.engine.Registrations(ctx)
	if err != nil {
		return Status{}, err
	}
	st := n.engine.Stats()
	now := time.Now()
	out := Status{
		Node:          n.engine.NodeID(),
		Version:       n.version(),
		Started:       n.started,
		Uptime:        now.Sub(n.started).Round(time.Second).String(),
		Draining:      n.draining.Load(),
		Registrations: len(regs),
		PendingDials:  st.Kinds[actors.KindPending].Live,
		Pairs:         st.Kinds[actors.KindPair].Live,
		BytesToServer: st.BytesToServer,
		BytesToClient: st.BytesToClient,
		Dials:         n.counters.dialCounts(),
		Refusals:      n.counters.refusalList(),
		Limits:        effectiveLimits(&n.cfg),
		Cluster:       n.clusterStatus(ctx),
	}
	// One row per name: a group's members are summed.
	byName := make(map[string]*NameStatus, len(regs))
	for _, r := range regs {
		ns := byName[r.Name]
		if ns == nil {
			ns = &NameStatus{Name: r.Name, ClientAddr: r.ClientAddr, Since: r.Since}
			byName[r.Name] = ns
			out.Names = append(out.Names, NameStatus{})
		} else {
			ns.ClientAddr += ", " + r.ClientAddr
			if r.Since.Before(ns.Since) {
				ns.Since = r.Since
			}
		}
		ns.Members++
		ns.Queued += r.Queued
		ns.Pending += r.Pending
		ns.Pairs += r.Pairs
		ns.BytesToServer += r.BytesToServer
		ns.BytesToClient += r.BytesToClient
	}
	out.Names = out.Names[:0]
	for _, ns := range byName {
		ns.RateToServer, ns.RateToClient = n.rateOf(ns.Name)
		out.Names = append(out.Names, *ns)
	}
	sort.Slice(out.Names, func(i, j int) bool { return out.Names[i].Name < out.Names[j].Name })
	mbs := n.engine.Config().Mailboxes
	for k, mb := range []actors.Mailbox{mbs.Directory, mbs.Listener, mbs.Pending, mbs.Pair} {
		ks := st.Kinds[k]
		out.Actors = append(out.Actors, ActorKindStatus{
			Kind: actors.Kind(k).String(), Mailbox: mb.String(), Live: ks.Live, Processed: ks.Processed, Queued: ks.Queued,
		})
	}
	return out, nil
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": humanBytes,
	"rate":  func(f float64) string { return humanBytes(int64(f)) + "/s" },
	"ago":   func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>relay {{.Node}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.05em;margin:1.4em 0 .4em}
.sub{color:#666} .tiles{display:flex;gap:.8em;flex-wrap:wrap}
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em .9em;min-width:8em}
.tile b{display:block;font-size:1.4em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right} th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
.draining{color:#b00;font-weight:bold} .empty{color:#888;font-style:italic}
</style></head><body>
<h1>clusterlink relay <code>{{.Node}}</code></h1>
<div class="sub">version <code class="version">{{.Version}}</code> · up {{.Uptime}} · {{if .Draining}}<span class="draining">draining</span>{{else}}<span class="serving">serving</span>{{end}} · refreshes every 5 s</div>
<h2>Totals</h2>
<div class="tiles">
<div class="tile">registrations<b>{{.Registrations}}</b></div>
<div class="tile">pending dials<b>{{.PendingDials}}</b></div>
<div class="tile">live pairs<b>{{.Pairs}}</b></div>
<div class="tile">to servers<b>{{bytes .BytesToServer}}</b></div>
<div class="tile">to clients<b>{{bytes .BytesToClient}}</b></div>
{{range $o, $n := .Dials}}<div class="tile">dials {{$o}}<b>{{$n}}</b></div>
{{end}}</div>
{{with .Cluster}}<h2>Cluster</h2>
<div class="sub">node <code>{{.Node}}</code> at <code>{{.Addr}}</code>, advertised <code>{{.PublicURL}}</code> · {{if .LeaseHeld}}<span class="serving">lease held {{.LeaseAge}}</span>{{else}}<span class="draining">no lease</span>{{end}} · {{.CrossNodeDials}} cross-node dials · {{.NotifyRefused}} notifies refused</div>
{{if .NodesError}}<p class="draining">nodes unreadable: {{.NodesError}}</p>{{end}}
<table class="cluster-nodes"><tr><th>node</th><th>cluster address</th><th>public URL</th><th>lease age</th><th>names</th></tr>
{{range .Nodes}}<tr><td>{{.Node}}</td><td>{{.ClusterAddr}}</td><td>{{.PublicURL}}</td><td>{{.LeaseAge}}</td><td>{{range $i, $n := .Names}}{{if $i}}, {{end}}{{$n}}{{end}}</td></tr>
{{end}}</table>
{{if .Names}}<table class="cluster-names"><tr><th>name</th><th>nodes</th></tr>
{{range .Names}}<tr><td>{{.Name}}</td><td>{{range $i, $n := .Nodes}}{{if $i}}, {{end}}{{$n}}{{end}}</td></tr>
{{end}}</table>{{else}}<p class="empty">no names in the cluster</p>{{end}}
{{end}}<h2>Names</h2>
{{if .Names}}<table><tr><th>name</th><th>members</th><th>server</th><th>registered</th><th>queued</th><th>pending</th><th>pairs</th><th>to server</th><th>to client</th></tr>
{{range .Names}}<tr><td>{{.Name}}</td><td>{{.Members}}</td><td>{{.ClientAddr}}</td><td>{{ago .Since}} ago</td><td>{{.Queued}}</td><td>{{.Pending}}</td><td>{{.Pairs}}</td><td>{{bytes .BytesToServer}} ({{rate .RateToServer}})</td><td>{{bytes .BytesToClient}} ({{rate .RateToClient}})</td></tr>
{{end}}</table>{{else}}<p class="empty">no registrations</p>{{end}}
<h2>Refusals</h2>
{{if .Refusals}}<table><tr><th>route</th><th>status</th><th>reason</th><th>count</th></tr>
{{range .Refusals}}<tr><td>{{.Route}}</td><td>{{.Status}}</td><td>{{.Reason}}</td><td>{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="empty">none</p>{{end}}
<h2>Actors</h2>
<table><tr><th>kind</th><th>mailbox</th><th>live</th><th>messages</th><th>queued</th></tr>
{{range .Actors}}<tr><td>{{.Kind}}</td><td>{{.Mailbox}}</td><td>{{.Live}}</td><td>{{.Processed}}</td><td>{{.Queued}}</td></tr>
{{end}}</table>
<h2>Limits</h2>
<table class="limits"><tr><th>setting</th><th>value</th></tr>
{{range .Limits}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</table>
</body></html>
`))

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + "KMGTP"[i:i+1] + "iB"
}

package relaynode

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterlink-relay/relay/actors"
)

// collector exports the node's and the engine's counters to Prometheus. It
// reads them at scrape time: nothing on the dial path touches Prometheus.
type collector struct {
	n       *Node
	perName bool

	registrations, names, pending, pairs   *prometheus.Desc
	bytes, dials, v0Dials, refusals        *prometheus.Desc
	splice                                 *prometheus.Desc
	queueMax, queued, queueByName          *prometheus.Desc
	actorsLive, actorMessages, actorQueued *prometheus.Desc
	pairsCut, uptime, parked               *prometheus.Desc
}

func newCollector(n *Node, perName bool) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		n:             n,
		perName:       perName,
		registrations: d("relay_registrations", "Live registrations (listen streams): group members, summed over names."),
		names:         d("relay_names", "Registered names (groups of one or more registrations)."),
		pending:       d("relay_pending_dials", "Dials waiting for their server's callback."),
		parked:        d("relay_parked_callbacks", "Callbacks parked in warm pools, waiting for a dial."),
		pairs:         d("relay_pairs", "Live spliced pairs."),
		bytes:         d("relay_relayed_bytes_total", "Bytes relayed, by direction.", "direction"),
		dials:         d("relay_dials_total", "Dials answered, by outcome.", "outcome"),
		v0Dials:       d("relay_v0_dials_total", "Dials on the v0 wire (-compat-v0), by outcome; also counted in relay_dials_total.", "outcome"),
		refusals:      d("relay_refusals_total", "Requests refused, by route, status and reason.", "route", "status", "reason"),
		splice:        d("relay_dial_splice_seconds", "Time from a dial reaching its registration to the start of its pair.", "path"),
		queueMax:      d("relay_sse_queue_depth_max", "Deepest SSE event queue over all registrations."),
		queued:        d("relay_sse_queued_events", "SSE events queued and unwritten, over all registrations."),
		queueByName:   d("relay_sse_queue_depth", "SSE events queued for one registration (only with per-name metrics on).", "name"),
		actorsLive:    d("relay_actors", "Live actors, by kind.", "kind"),
		actorMessages: d("relay_actor_messages_total", "Messages processed by actors, by kind.", "kind"),
		actorQueued:   d("relay_actor_mailbox_depth", "Messages posted to and not yet processed by actors, by kind.", "kind"),
		pairsCut:      d("relay_pairs_cut_total", "Pairs cut by a limit, by limit.", "limit"),
		uptime:        d("relay_uptime_seconds", "Seconds since the node started."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.registrations, c.names, c.pending, c.pairs, c.bytes, c.dials, c.v0Dials, c.refusals,
		c.splice, c.queueMax, c.queued, c.queueByName, c.actorsLive, c.actorMessages, c.actorQueued, c.pairsCut, c.uptime, c.parked} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.engine.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.registrations, float64(st.Kinds[actors.KindListener].Live))
	gauge(c.pending, float64(st.Kinds[actors.KindPending].Live))
	gauge(c.pairs, float64(st.Kinds[actors.KindPair].Live))
	gauge(c.parked, float64(st.Parked))
	counter(c.bytes, float64(st.BytesToServer), "to_server")
	counter(c.bytes, float64(st.BytesToClient), "to_client")
	for o, v := range c.n.counters.dialCounts() {
		counter(c.dials, float64(v), o)
	}
	if c.n.cfg.CompatV0 {
		for o, v := range c.n.counters.v0DialCounts() {
			counter(c.v0Dials, float64(v), o)
		}
	}
	for _, r := range c.n.counters.refusalList() {
		counter(c.refusals, float64(r.Count), r.Route, strconv.Itoa(r.Status), r.Reason)
	}
	for path, h := range map[string]actors.Histogram{"cold": st.SpliceLatency, "warm": st.SpliceLatencyWarm} {
		buckets := make(map[float64]uint64, len(actors.LatencyBuckets))
		var cum uint64
		for i, ub := range actors.LatencyBuckets {
			cum += h.Counts[i]
			buckets[ub] = cum
		}
		cum += h.Counts[len(actors.LatencyBuckets)]
		ch <- prometheus.MustNewConstHistogram(c.splice, cum, h.Sum.Seconds(), buckets, path)
	}
	for k := actors.KindDirectory; k <= actors.KindPair; k++ {
		ks := st.Kinds[k]
		gauge(c.actorsLive, float64(ks.Live), k.String())
		counter(c.actorMessages, float64(ks.Processed), k.String())
		gauge(c.actorQueued, float64(ks.Queued), k.String())
	}
	counter(c.pairsCut, float64(st.PairsIdle), "idle")
	counter(c.pairsCut, float64(st.PairsMaxDuration), "duration")
	counter(c.pairsCut, float64(st.PairsMaxBytes), "bytes")
	gauge(c.uptime, time.Since(c.n.started).Seconds())

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	regs, err := c.n.engine.Registrations(ctx)
	cancel()
	if err != nil {
		return
	}
	var maxQ, sumQ int
	names := make(map[string]struct{}, len(regs))
	for _, r := range regs {
		names[r.Name] = struct{}{}
		maxQ = max(maxQ, r.Queued)
		sumQ += r.Queued
		if c.perName {
			gauge(c.queueByName, float64(r.Queued), r.Name)
		}
	}
	gauge(c.names, float64(len(names)))
	gauge(c.queueMax, float64(maxQ))
	gauge(c.queued, float64(sumQ))
}

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

	// The cluster's, exported by a clustered node only.
	dirOps, dirOpErrors, notifySent, notifyFailed              *prometheus.Desc
	crossDials, unavailable, notified, notifyRef, notifyWaited *prometheus.Desc
	renewals, losses, leaseHeld, leaseAge, evict               *prometheus.Desc
	clusterNames, notifyLatency, linked                        *prometheus.Desc
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

		dirOps:        d("relay_cluster_directory_op_seconds", "Cluster directory writes (etcd transactions) and their latency, by operation.", "op"),
		dirOpErrors:   d("relay_cluster_directory_op_errors_total", "Cluster directory writes that failed (not counting 409s), by operation.", "op"),
		notifySent:    d("relay_cluster_notify_sent_total", "Notifies sent to another node for a cross-node dial, by peer node.", "peer"),
		notifyFailed:  d("relay_cluster_notify_failed_total", "Notifies that got no answer in time or could not be delivered (the dial got 503), by peer node.", "peer"),
		crossDials:    d("relay_cluster_cross_node_dials_total", "Dials made here for a registration on another node."),
		unavailable:   d("relay_cluster_unavailable_total", "Cross-node dials refused 503 because the directory had no lease."),
		notified:      d("relay_cluster_notified_total", "Other nodes' notifies served here: a connect event queued."),
		notifyRef:     d("relay_cluster_notify_refused_total", "Other nodes' notifies refused here: registration not held, or malformed."),
		notifyWaited:  d("relay_cluster_notify_waited_total", "Other nodes' notifies that arrived for a registration this node was still publishing, and waited for it."),
		renewals:      d("relay_cluster_lease_renewals_total", "Keep-alive answers for the node's etcd lease."),
		losses:        d("relay_cluster_lease_losses_total", "Etcd leases lost (each followed by a new one and a publish of the node's names again)."),
		leaseHeld:     d("relay_cluster_lease_held", "1 while the node holds a live etcd lease, else 0."),
		leaseAge:      d("relay_cluster_lease_age_seconds", "How long the node has held its current etcd lease."),
		evict:         d("relay_cluster_evicted_total", "Local registrations ended because another node took their name over."),
		clusterNames:  d("relay_cluster_names", "Names in the cluster directory, over every node."),
		notifyLatency: d("relay_cluster_notify_seconds", "Round trip of the Notifies answered: sent to the holder, connect event queued there, answer back."),
		linked:        d("relay_cluster_peers_linked", "Other nodes the cluster port holds a connection to (kept open to every node, so that a peer's death is known at once)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.registrations, c.names, c.pending, c.pairs, c.bytes, c.dials, c.v0Dials, c.refusals,
		c.splice, c.queueMax, c.queued, c.queueByName, c.actorsLive, c.actorMessages, c.actorQueued, c.pairsCut, c.uptime, c.parked,
		c.dirOps, c.dirOpErrors, c.notifySent, c.notifyFailed, c.crossDials, c.unavailable, c.notified, c.notifyRef, c.notifyWaited,
		c.renewals, c.losses, c.leaseHeld, c.leaseAge, c.evict, c.clusterNames, c.notifyLatency, c.linked} {
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
		ch <- constHistogram(c.splice, h, path)
	}
	c.collectCluster(ch, gauge, counter)
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

// constHistogram exports an engine histogram, over actors.LatencyBuckets.
func constHistogram(d *prometheus.Desc, h actors.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(actors.LatencyBuckets))
	var cum uint64
	for i, ub := range actors.LatencyBuckets {
		cum += h.Counts[i]
		buckets[ub] = cum
	}
	cum += h.Counts[len(actors.LatencyBuckets)]
	return prometheus.MustNewConstHistogram(d, cum, h.Sum.Seconds(), buckets, labels...)
}

// collectCluster exports the cluster's series, on a clustered node only.
func (c *collector) collectCluster(ch chan<- prometheus.Metric, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	st, ok := c.n.engine.ClusterStats()
	if !ok {
		return
	}
	for _, op := range st.Ops {
		ch <- constHistogram(c.dirOps, op.Latency, op.Op)
		counter(c.dirOpErrors, float64(op.Errors), op.Op)
	}
	for peer, ps := range st.Peers {
		counter(c.notifySent, float64(ps.Sent), peer)
		counter(c.notifyFailed, float64(ps.Failed), peer)
	}
	counter(c.crossDials, float64(st.CrossDials))
	counter(c.unavailable, float64(st.Unavailable))
	counter(c.notified, float64(st.Notified))
	counter(c.notifyRef, float64(st.NotifyRefused))
	counter(c.notifyWaited, float64(st.NotifyWaited))
	counter(c.renewals, float64(st.Directory.Renewals))
	counter(c.losses, float64(st.Directory.Losses))
	held := 0.0
	if st.Directory.Healthy {
		held = 1
	}
	gauge(c.leaseHeld, held)
	gauge(c.leaseAge, st.Directory.LeaseAge.Seconds())
	counter(c.evict, float64(st.Evicted))
	gauge(c.linked, float64(st.Linked))
	gauge(c.clusterNames, float64(len(c.n.engine.ClusterDirectory().Snapshot())))
	ch <- constHistogram(c.notifyLatency, st.NotifyLatency)
}

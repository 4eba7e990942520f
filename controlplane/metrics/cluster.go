package metrics

import "github.com/prometheus/client_golang/prometheus"

// clusterMetrics count what several control planes on one state store do
// for each other (package cluster). Frozen after init; the collectors are
// safe for concurrent use.
type clusterMetrics struct {
	takenOver prometheus.Counter
	members   prometheus.Gauge
	forwarded *prometheus.CounterVec
	relayed   *prometheus.CounterVec
}

func (c *clusterMetrics) init() []prometheus.Collector {
	c.takenOver = prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_calls_taken_over_total",
		Help: "Answered calls this control plane took over from a control plane whose lease expired."})
	c.members = prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_cluster_members",
		Help: "Control planes with a live lease on the shared state store, this one included (1 with an embedded or memory store)."})
	c.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_cluster_requests_total",
		Help: "API requests for calls another control plane holds, sent to it, by operation (list, get, hangup, dtmf) and result (ok, not_found, error)."},
		[]string{"op", "result"})
	c.relayed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_cluster_relayed_messages_total",
		Help: "SIP messages of browsers' WebSockets relayed between control planes, by direction (out: toward a browser another control plane holds, in: from one, publish: not taken by the store, queue: read from this control plane's queue) and result (ok, dropped; for queue: duplicate, a message seen already, and stale, one older than 32 s)."},
		[]string{"direction", "result"})
	return []prometheus.Collector{c.takenOver, c.members, c.forwarded, c.relayed}
}

// CallTakenOver counts a call taken over from a dead control plane.
func (m *Metrics) CallTakenOver() {
	if m == nil {
		return
	}
	m.cluster.takenOver.Inc()
}

// SetClusterMembers records how many control planes hold a live lease.
func (m *Metrics) SetClusterMembers(n int) {
	if m == nil {
		return
	}
	m.cluster.members.Set(float64(n))
}

// ClusterRequest counts a request sent to another control plane; op and
// result are from small fixed sets (the labels stay bounded).
func (m *Metrics) ClusterRequest(op, result string) {
	if m == nil {
		return
	}
	m.cluster.forwarded.WithLabelValues(op, result).Inc()
}

// ClusterRelay counts a SIP message relayed between a browser's WebSocket
// and the control plane whose dialog it is; direction and result are
// from small fixed sets.
func (m *Metrics) ClusterRelay(direction, result string) {
	if m == nil {
		return
	}
	m.cluster.relayed.WithLabelValues(direction, result).Inc()
}

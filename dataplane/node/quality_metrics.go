package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/dataplane/quality"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// qualityMetrics are the histograms of the streams' interval samples (one
// observation per stream, direction and relay.QualityInterval). Labels are
// closed sets: leg is "webrtc" or "sip" (a plain RTP leg), direction "in"
// (what the node received from the leg's peer, as it measured it) or "out"
// (what the peer's RTCP reports say it received from the node).
type qualityMetrics struct {
	mos, jitter, loss, rtt *prometheus.HistogramVec
}

func newQualityMetrics() *qualityMetrics {
	labels := []string{"leg", "direction"}
	q := &qualityMetrics{
		mos: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_media_mos",
			Help:    "Estimated MOS (simplified ITU-T G.107 E-model) per stream and interval, by leg kind and direction.",
			Buckets: []float64{1, 2, 2.5, 3, 3.5, 3.8, 4, 4.2, 4.3, 4.4, 4.5}}, labels),
		jitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_media_jitter_seconds",
			Help:    "Interarrival jitter (RFC 3550) per stream and interval, by leg kind and direction.",
			Buckets: []float64{.001, .002, .005, .01, .02, .03, .05, .1, .2, .5}}, labels),
		loss: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_media_loss_ratio",
			Help:    "Fraction of packets lost per stream and interval, by leg kind and direction.",
			Buckets: []float64{0, .001, .005, .01, .02, .05, .1, .2, .5, 1}}, labels),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_media_rtt_seconds",
			Help:    "Round-trip time node <-> peer from RTCP LSR/DLSR per stream and interval, by leg kind (direction out: measured on the node's reports).",
			Buckets: []float64{.005, .01, .02, .05, .1, .15, .2, .3, .5, 1, 2}}, labels),
	}
	// Every series exists from the start, at zero: a dashboard or alert
	// finds them on a node that has carried no call yet.
	for _, leg := range []string{"webrtc", "sip"} {
		for _, dir := range []string{"in", "out"} {
			q.mos.WithLabelValues(leg, dir)
			q.jitter.WithLabelValues(leg, dir)
			q.loss.WithLabelValues(leg, dir)
			q.rtt.WithLabelValues(leg, dir)
		}
	}
	return q
}

// observe takes one interval sample (relay.Config.QualitySample).
func (q *qualityMetrics) observe(kind pb.LegKind, out bool, s quality.Sample) {
	leg, dir := "sip", "in"
	if kind == pb.LegKind_LEG_KIND_WEBRTC {
		leg = "webrtc"
	}
	if out {
		dir = "out"
	}
	q.mos.WithLabelValues(leg, dir).Observe(s.MOS)
	q.jitter.WithLabelValues(leg, dir).Observe(s.Jitter)
	q.loss.WithLabelValues(leg, dir).Observe(s.Loss)
	if s.HasRTT {
		q.rtt.WithLabelValues(leg, dir).Observe(s.RTT)
	}
}

func (q *qualityMetrics) describe(ch chan<- *prometheus.Desc) {
	q.mos.Describe(ch)
	q.jitter.Describe(ch)
	q.loss.Describe(ch)
	q.rtt.Describe(ch)
}

func (q *qualityMetrics) collect(ch chan<- prometheus.Metric) {
	q.mos.Collect(ch)
	q.jitter.Collect(ch)
	q.loss.Collect(ch)
	q.rtt.Collect(ch)
}

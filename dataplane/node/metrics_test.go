package node

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/dataplane/relay"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestDropMetricHasEveryReason: the node's drop metric has one series per
// drop counter of the proto, labelled with the field's name, among them
// the ones a hand-kept list once missed.
func TestDropMetricHasEveryReason(t *testing.T) {
	n := newTestNode(t, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if mf.GetName() != "strait_dataplane_drops_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got = append(got, m.GetLabel()[0].GetValue())
		}
	}
	var want []string
	for r := range pb.NumDropReasons {
		want = append(want, r.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("drop reasons in the metric %v, want %v", got, want)
	}
	for _, r := range []string{"stun_auth", "rcvbuf", "sequence", "replay"} {
		if !slices.Contains(got, r) {
			t.Errorf("no series for reason %q", r)
		}
	}
}

// TestHoldHistogram: the workers' hold times are a Prometheus histogram
// with a bucket per power of two microseconds.
func TestHoldHistogram(t *testing.T) {
	n := newTestNode(t, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "strait_dataplane_hold_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if b := h.GetBucket(); len(b) != relay.HoldBuckets || b[0].GetUpperBound() != 1e-6 {
				t.Fatalf("buckets %v", b)
			}
			return
		}
	}
	t.Fatal("no strait_dataplane_hold_seconds")
}

// TestTrafficCollectorBesideTheControlPlane: the all-in-one registers the
// node's traffic collector on the control plane's registry, which has its
// own strait_dataplane_sessions: no clash, and the drops are there.
func TestTrafficCollectorBesideTheControlPlane(t *testing.T) {
	n := newTestNode(t, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_dataplane_sessions", Help: "control plane's"}, []string{"node"}))
	reg.MustRegister(n.TrafficCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "strait_dataplane_drops_total"
	}
	if !found {
		t.Fatal("no strait_dataplane_drops_total")
	}
}

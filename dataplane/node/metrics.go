package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/relay"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Collector returns a Prometheus collector for the node. Counters are
// read from the legs and workers when scraped (the packet path only adds to
// atomics; labelled metric lookups, which lock, never happen per packet).
func (n *Node) Collector() prometheus.Collector { return &collector{n: n, all: true} }

// TrafficCollector is Collector without the session gauge: for a process
// that embeds the node and counts sessions itself (the all-in-one strait,
// whose control plane exports strait_dataplane_sessions per node), so that
// its /metrics shows the node's traffic, drops and ports too.
func (n *Node) TrafficCollector() prometheus.Collector { return &collector{n: n} }

type collector struct {
	n   *Node
	all bool // include descSessions
}

var (
	descSessions = prometheus.NewDesc("strait_dataplane_sessions", "Sessions held by the node.", nil, nil)
	descDraining = prometheus.NewDesc("strait_dataplane_draining", "1 while the node drains (no new sessions).", nil, nil)
	descPorts    = prometheus.NewDesc("strait_dataplane_port_pairs_in_use", "Plain RTP/RTCP port pairs allocated.", nil, nil)
	descPortsCap = prometheus.NewDesc("strait_dataplane_port_pairs", "Plain RTP/RTCP port pairs in the range, per media address.", nil, nil)
	descPackets  = prometheus.NewDesc("strait_dataplane_packets_total", "RTP packets relayed, by direction (in: from peers; out: to peers).", []string{"direction"}, nil)
	descBytes    = prometheus.NewDesc("strait_dataplane_bytes_total", "RTP and RTCP bytes, by direction.", []string{"direction"}, nil)
	descRTCP     = prometheus.NewDesc("strait_dataplane_rtcp_packets_total", "RTCP packets, by direction.", []string{"direction"}, nil)
	descControl  = prometheus.NewDesc("strait_dataplane_control_packets_total", "ICE checks answered and DTLS datagrams received.", []string{"protocol"}, nil)
	descDrops    = prometheus.NewDesc("strait_dataplane_drops_total", "Datagrams dropped, by reason.", []string{"reason"}, nil)
	descEvents   = prometheus.NewDesc("strait_dataplane_events_dropped_total", "Events a slow watcher missed.", nil, nil)
	descWorkers  = prometheus.NewDesc("strait_dataplane_workers", "Packet workers.", nil, nil)
	descSyscalls = prometheus.NewDesc("strait_dataplane_syscalls_total", "System calls the packet workers made for datagram I/O, by call.", []string{"call"}, nil)
	descRounds   = prometheus.NewDesc("strait_dataplane_io_rounds_total", "Packet worker wake-ups (rounds of datagrams handled).", nil, nil)
	descIOMode   = prometheus.NewDesc("strait_dataplane_io_mode", "1 for the packet workers' I/O implementation.", []string{"mode"}, nil)
	descHold     = prometheus.NewDesc("strait_dataplane_hold_seconds",
		"How long a packet worker held each datagram, from its round's wake-up to the round's sends going to the kernel (an upper bound per datagram: the round's whole duration).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	if c.all {
		ch <- descSessions
	}
	for _, d := range []*prometheus.Desc{descDraining, descPorts, descPortsCap, descPackets, descBytes, descRTCP, descControl, descDrops, descEvents, descWorkers, descSyscalls, descRounds, descIOMode, descHold} {
		ch <- d
	}
	c.n.quality.describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	e := n.eng
	t := e.Totals()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.all {
		gauge(descSessions, float64(e.Len()))
	}
	draining := 0.0
	if n.draining.Load() {
		draining = 1
	}
	gauge(descDraining, draining)
	gauge(descPorts, float64(e.PortsInUse()))
	gauge(descPortsCap, float64(e.Config().RTPPorts.Pairs()))
	gauge(descWorkers, float64(e.Config().Workers))
	counter(descPackets, t.PacketsIn, "in")
	counter(descPackets, t.PacketsOut, "out")
	counter(descBytes, t.BytesIn, "in")
	counter(descBytes, t.BytesOut, "out")
	counter(descRTCP, t.RtcpIn, "in")
	counter(descRTCP, t.RtcpOut, "out")
	counter(descControl, t.StunIn, "stun")
	counter(descControl, t.DtlsIn, "dtls")
	for r := range pb.NumDropReasons {
		counter(descDrops, t.Drop(r), r.String()) // labels: the LegCounters field names without drop_
	}
	counter(descEvents, n.dropped.Load())
	io := e.IOStats()
	for c, v := range io.Calls {
		counter(descSyscalls, v, batchconn.Call(c).String())
	}
	counter(descRounds, io.Rounds)
	gauge(descIOMode, 1, string(io.Mode))
	hold := e.HoldStats()
	buckets := make(map[float64]uint64, relay.HoldBuckets)
	var cum uint64
	for i := range relay.HoldBuckets {
		cum += hold.Counts[i]
		buckets[relay.HoldBound(i).Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descHold, cum+hold.Counts[relay.HoldBuckets], hold.Sum.Seconds(), buckets)
	n.quality.collect(ch)
}

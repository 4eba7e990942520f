package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/bench/webrtcclient"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Addresses of a run. Each party has a loopback address of its own, so
// that the node's port ranges (tens of thousands of ports at 10 000
// sessions) collide neither with the harness's sockets nor with other
// programs on 127.0.0.1.
var (
	harnessIP   = netip.MustParseAddr("127.0.0.2")
	rtpengineIP = netip.MustParseAddr("127.0.0.3")
	nodeIP      = netip.MustParseAddr("127.0.0.4")
)

// Port ranges of a node the harness starts.
const (
	nodeWebRTCPorts = "10000-10003"
	nodeSharedPorts = "10010-10025"
	nodeRTPPorts    = "12000-59999"
)

// straitNode is a Strait dataplane node in a process of its own.
type straitNode struct {
	cmd     *exec.Cmd
	done    chan struct{}
	pidv    int
	metrics string
	conn    *grpc.ClientConn
	api     pb.Node
	info    *pb.NodeInfoResponse
}

// nodeBinary finds strait-dataplane: the path given, one beside this
// executable, one on $PATH, or one built now from this module.
func nodeBinary(path string, log io.Writer) (string, func(), error) {
	if path != "" {
		return path, func() {}, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "strait-dataplane")
		if _, err := os.Stat(p); err == nil {
			return p, func() {}, nil
		}
	}
	if p, err := exec.LookPath("strait-dataplane"); err == nil {
		return p, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "strait-bench")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "strait-dataplane")
	fmt.Fprintln(log, "building strait-dataplane (give --node-bin to skip)")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/strait-sbc/strait/cmd/strait-dataplane")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building strait-dataplane: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func freeTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// nodeOptions are what a started node is told.
type nodeOptions struct {
	ip       netip.Addr
	workers  int
	cpus     string
	io       string // --io
	coalesce time.Duration
}

// nthAddr is a + n (an address of its own for each node of a run).
func nthAddr(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

// startNode runs strait-dataplane and connects to it.
func startNode(ctx context.Context, bin string, o nodeOptions, log io.Writer) (*straitNode, error) {
	grpcAddr, err := freeTCP()
	if err != nil {
		return nil, err
	}
	metrics, err := freeTCP()
	if err != nil {
		return nil, err
	}
	args := []string{"--grpc", grpcAddr, "--metrics", metrics, "--media-ip", o.ip.String(),
		"--webrtc-ports", nodeWebRTCPorts, "--plain-shared-ports", nodeSharedPorts, "--rtp-ports", nodeRTPPorts,
		"--media-timeout", "1h", "--log-level", "warn",
		// A completed handshake's state is released after the linger
		// (30 s by default); a short one lets memory per session be
		// measured in steady state within a short run.
		"--dtls-linger", "1s"}
	if o.workers > 0 {
		args = append(args, "--workers", strconv.Itoa(o.workers))
	}
	if o.io != "" {
		args = append(args, "--io", o.io)
	}
	if o.coalesce > 0 {
		args = append(args, "--coalesce", o.coalesce.String())
	}
	cmd := exec.Command(bin, args...)
	if o.cpus != "" {
		// taskset execs the node, so the pid stays the node's.
		cmd = exec.Command("taskset", append([]string{"-c", o.cpus, bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &straitNode{cmd: cmd, done: make(chan struct{}), pidv: cmd.Process.Pid, metrics: metrics}
	go func() { cmd.Wait(); close(n.done) }()
	if err := n.connect(ctx, grpcAddr); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// attachNode uses a node that is already running.
func attachNode(ctx context.Context, nodeURL string, pid int, metrics string) (*straitNode, error) {
	u, err := url.Parse(nodeURL)
	if err != nil || u.Scheme != "grpc" || u.Host == "" {
		return nil, fmt.Errorf("--node %q: want grpc://HOST:PORT", nodeURL)
	}
	if pid <= 0 {
		return nil, errors.New("--node needs --node-pid (its CPU time is read from /proc)")
	}
	if metrics == "" {
		host, port, _ := net.SplitHostPort(u.Host)
		p, _ := strconv.Atoi(port)
		metrics = net.JoinHostPort(host, strconv.Itoa(p+1)) // the node's default layout: 9090, 9091
	}
	n := &straitNode{pidv: pid, metrics: metrics}
	return n, n.connect(ctx, u.Host)
}

func (n *straitNode) connect(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	n.conn, n.api = conn, pb.NewClient(conn)
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		n.info, err = n.api.NodeInfo(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if n.done != nil {
			select {
			case <-n.done:
				return fmt.Errorf("strait-dataplane exited: %v", n.cmd.ProcessState)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node at %s did not answer: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *straitNode) close() {
	if n.conn != nil {
		n.conn.Close()
	}
	if n.cmd != nil {
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

// ioMode is the I/O implementation the node reports it runs (what "auto"
// chose), or asked when it does not say.
func (n *straitNode) ioMode(asked string) string {
	m, err := procstat.Scrape(n.metrics)
	if err != nil {
		return asked
	}
	for mode, v := range m.Labelled("strait_dataplane_io_mode") {
		if v == 1 {
			return mode
		}
	}
	return asked
}

// straitRelay measures a Strait node.
type straitRelay struct {
	n    *straitNode
	h    *harness
	io   string // the node's I/O mode
	node string // its binary's label, when a run compares several
}

func (r *straitRelay) target(k kind) string {
	if k.legs == legsPlain {
		return report.TargetStraitPlain
	}
	return report.TargetStrait
}

func (r *straitRelay) pid() int { return r.n.pidv }

func (r *straitRelay) sample() (sample, error) {
	cpu, err := procstat.CPU(r.n.pidv)
	if err != nil {
		return sample{}, err
	}
	m, err := procstat.Scrape(r.n.metrics)
	if err != nil {
		return sample{}, err
	}
	// A scrape allocates in the node (its collector builds counters per
	// leg), partly before go_memstats_mallocs_total is read: a second
	// scrape right after measures that cost, so that it is not charged to
	// the packets.
	m2, err := procstat.Scrape(r.n.metrics)
	if err != nil {
		return sample{}, err
	}
	rss, _ := procstat.RSS(r.n.pidv)
	sched, _ := procstat.SchedStat(r.n.pidv)
	s := sample{cpu: cpu, sched: sched, rss: rss, hasNodeCounters: true,
		scrapeAllocs: m2["go_memstats_mallocs_total"] - m["go_memstats_mallocs_total"],
		forwarded:    uint64(m[`strait_dataplane_packets_total{direction="out"}`]),
		mallocs:      m["go_memstats_mallocs_total"],
		drops:        map[string]uint64{}}
	for k, v := range m.Labelled("strait_dataplane_drops_total") {
		s.drops[k] = uint64(v)
	}
	s.syscalls = map[string]uint64{}
	for k, v := range m.Labelled("strait_dataplane_syscalls_total") {
		s.syscalls[k] = uint64(v)
	}
	s.rounds = uint64(m["strait_dataplane_io_rounds_total"])
	s.hold = map[float64]float64{}
	for le, v := range m.Labelled("strait_dataplane_hold_seconds_bucket") {
		if b, err := strconv.ParseFloat(le, 64); err == nil {
			s.hold[b] = v
		}
	}
	_, s.received = r.h.engine.Totals()
	return s, nil
}

// saturation: the node's drops are in Result.NodeDrops already.
func (r *straitRelay) saturation() string { return "" }

// memory is the node's live Go heap plus goroutine stacks after a
// collection: what sessions cost it, free of garbage not yet collected.
func (r *straitRelay) memory() (float64, string, error) {
	// Twice: sync.Pool caches survive one collection (as victims).
	for range 2 {
		if err := procstat.CollectGarbage(r.n.metrics); err != nil {
			return 0, "", err
		}
	}
	m, err := procstat.Scrape(r.n.metrics)
	if err != nil {
		return 0, "", err
	}
	return m["go_memstats_heap_inuse_bytes"] + m["go_memstats_stack_inuse_bytes"], "go heap in use + goroutine stacks after GC (kernel socket memory not included)", nil
}

func mustAddr(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return a, fmt.Errorf("node gave address %q: %w", s, err)
	}
	return a, nil
}

func (r *straitRelay) codecs() []*pb.Codec {
	c := r.h.codec
	ch := uint32(1)
	if c.Name == "opus" {
		ch = 2
	}
	return []*pb.Codec{{PayloadType: uint32(c.PT), Name: c.Name, ClockRate: c.ClockRate, Channels: ch}}
}

func (r *straitRelay) plainLeg(ep *rtpgen.Endpoint, shared bool) *pb.LegSpec {
	mode := pb.PortMode_PORT_MODE_PER_LEG
	if shared {
		mode = pb.PortMode_PORT_MODE_SHARED
	}
	return &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{
		Media: "audio", Codecs: r.codecs(),
		Plain: &pb.PlainSpec{RemoteAddr: ep.Addr().String(), RtcpMux: true, PortMode: mode},
	}}}
}

func (r *straitRelay) open(ctx context.Context, k kind, s *session) error {
	h := r.h
	req := &pb.CreateSessionRequest{Id: s.id, MediaTimeoutS: 3600, Labels: map[string]string{"bench": "strait-bench"}}
	a, err := h.plainEndpoint(k.shared, s)
	if err != nil {
		return err
	}
	var leg *webrtcclient.Leg
	var from0 *rtpgen.Endpoint
	if k.legs == legsWebRTC {
		cep, err := h.endpoint(s)
		if err != nil {
			return err
		}
		leg = webrtcclient.NewLeg(cep, h.ident)
		s.leg = leg
		req.Legs = append(req.Legs, &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_WEBRTC,
			Webrtc: &pb.WebRTCSpec{RemoteUfrag: leg.Ufrag, RemotePwd: leg.Pwd,
				RemoteFingerprint: &pb.Fingerprint{Algorithm: "sha-256", Value: h.ident.Fingerprint},
				// Strait answered the browser's actpass with active, as
				// the control plane does for browser offers.
				DtlsRole: pb.DTLSRole_DTLS_ROLE_CLIENT},
			Streams: []*pb.StreamSpec{{Media: "audio", Codecs: r.codecs()}}})
	} else {
		// Leg 0 of the baseline has a harness socket of its own, as the
		// WebRTC client leg it stands in for: on loopback the relay's send
		// carries the receiving socket's work (lookup, queueing, waking the
		// sink), which is cheaper on a few shared sockets than on one per
		// session, so a pooled leg 0 made the baseline cheaper for reasons
		// that are not SRTP's.
		b, err := h.endpoint(s)
		if err != nil {
			return err
		}
		req.Legs = append(req.Legs, r.plainLeg(b, k.shared))
		from0 = b
	}
	req.Legs = append(req.Legs, r.plainLeg(a, k.shared))
	s.created = h.engine.Now()
	sess, err := r.n.api.CreateSession(ctx, req)
	if err != nil {
		return fmt.Errorf("CreateSession: %w", err)
	}
	s.open = true
	relay0, err := mustAddr(sess.Legs[0].Streams[0].LocalAddr)
	if err != nil {
		return err
	}
	relay1, err := mustAddr(sess.Legs[1].Streams[0].LocalAddr)
	if err != nil {
		return err
	}
	if leg != nil {
		from0 = leg.Endpoint
	}
	if err := s.addFlows(h, from0, relay0, a, relay1); err != nil {
		return err
	}
	if leg == nil {
		s.activate(h, nil, nil)
		return nil
	}
	l0 := sess.Legs[0]
	keys, err := leg.Connect(ctx, webrtcclient.Remote{Addr: relay0, Ufrag: l0.LocalUfrag, Pwd: l0.LocalPwd,
		Fingerprint: l0.GetLocalFingerprint().GetValue(), DTLSClient: false}, k.profile)
	if err != nil {
		return err
	}
	s.handshake = keys.Handshake
	s.activate(h, keys.Enc, keys.Dec)
	return nil
}

func (r *straitRelay) close(ctx context.Context, s *session) error {
	if !s.open {
		return nil
	}
	_, err := r.n.api.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.id, Reason: "bench done"})
	return err
}

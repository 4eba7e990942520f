// Package node is a dataplane node: the relay engine behind the Node API of
// proto/strait/dataplane/v1, with its event stream, capacity limits and
// graceful drain. The all-in-one binary calls a Node in process; the
// strait-dataplane binary serves one over gRPC.
package node

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/dataplane/relay"
	"github.com/strait-sbc/strait/internal/logging"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Version is the node software version reported by NodeInfo; set at build
// time with -ldflags "-X github.com/strait-sbc/strait/dataplane/node.Version=...".
var Version = "dev"

// Config configures a node. Zero values take the defaults noted.
type Config struct {
	// ID names the node (default: the host name).
	ID string
	// MediaAddrs are the addresses to bind media sockets on. Required.
	MediaAddrs []netip.Addr
	// AdvertisedAddrs are announced instead of MediaAddrs (1:1 NAT), by index.
	AdvertisedAddrs []netip.Addr
	// WebRTCPorts are the shared WebRTC ports (default 20000-20003).
	WebRTCPorts portalloc.Range
	// RTPPorts are the plain port pairs (default 40000-49999).
	RTPPorts portalloc.Range
	// PlainSharedPorts are shared plain port pairs (default none).
	PlainSharedPorts portalloc.Range
	// Workers per core by default; BatchSize 64 by default.
	Workers, BatchSize int
	// IO is the workers' I/O implementation (default: io_uring where the
	// kernel allows it, else recvmmsg/sendmmsg with epoll).
	IO batchconn.Mode
	// Coalesce is, with io_uring, the longest a datagram waits for others
	// to join its round (0: none).
	Coalesce time.Duration
	// HotWait is, with io_uring, how long a worker waits for datagrams
	// keeping its Go scheduler slot (0: none).
	HotWait time.Duration
	// Socket tunes media sockets.
	Socket batchconn.Options
	// Certificate is the DTLS certificate; zero generates an ECDSA P-256
	// self-signed one at start (browsers pin it through the SDP
	// fingerprint, so it need not be stable across restarts).
	Certificate tls.Certificate
	// MaxSessions caps sessions (0: only ports limit).
	MaxSessions int
	// MediaTimeout is the default media timeout (default 60 s).
	MediaTimeout time.Duration
	// DTLSTimeout bounds handshakes (default 30 s).
	DTLSTimeout time.Duration
	// DTLSLinger is how long a completed DTLS association is kept for the
	// peer's retransmissions before its state is released (default 30 s).
	DTLSLinger time.Duration
	// QualityInterval is how often each stream's media quality is sampled
	// (0: relay.QualityInterval, 5 s).
	QualityInterval time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// Logger; nil is slog.Default().
	Logger *slog.Logger
}

// Defaults for Config.
var (
	DefaultWebRTCPorts = portalloc.Range{First: 20000, Last: 20003}
	DefaultRTPPorts    = portalloc.Range{First: 40000, Last: 49999}
)

// Node is a running dataplane node. It implements pb.Node.
type Node struct {
	cfg         Config
	eng         *relay.Engine
	fingerprint string
	log         *slog.Logger

	draining atomic.Bool
	// quality are the media-quality histograms (safe for concurrent use;
	// fed by the engine's janitor).
	quality *qualityMetrics

	mu       sync.Mutex // guards watchers
	watchers map[*watcher]struct{}
	dropped  atomic.Uint64
	done     chan struct{} // closed by Close
	stopOnce sync.Once
}

var _ pb.Node = (*Node)(nil)

// New starts a node.
func New(cfg Config) (*Node, error) {
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	if cfg.WebRTCPorts == (portalloc.Range{}) {
		cfg.WebRTCPorts = DefaultWebRTCPorts
	}
	if cfg.RTPPorts == (portalloc.Range{}) {
		cfg.RTPPorts = DefaultRTPPorts
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With(logging.KeyNode, cfg.ID)
	if len(cfg.Certificate.Certificate) == 0 {
		c, err := selfsign.GenerateSelfSigned()
		if err != nil {
			return nil, fmt.Errorf("node: generating DTLS certificate: %w", err)
		}
		cfg.Certificate = c
	}
	x, err := x509.ParseCertificate(cfg.Certificate.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("node: DTLS certificate: %w", err)
	}
	fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, fingerprint: upper(fp), log: cfg.Logger, watchers: make(map[*watcher]struct{}), done: make(chan struct{}),
		quality: newQualityMetrics()}
	n.eng, err = relay.New(relay.Config{
		Addrs:            cfg.MediaAddrs,
		Advertised:       cfg.AdvertisedAddrs,
		WebRTCPorts:      cfg.WebRTCPorts,
		RTPPorts:         cfg.RTPPorts,
		PlainSharedPorts: cfg.PlainSharedPorts,
		Workers:          cfg.Workers,
		BatchSize:        cfg.BatchSize,
		IO:               cfg.IO,
		Coalesce:         cfg.Coalesce,
		HotWait:          cfg.HotWait,
		Socket:           cfg.Socket,
		Certificate:      cfg.Certificate,
		Fingerprint:      n.fingerprint,
		MaxSessions:      cfg.MaxSessions,
		DTLSTimeout:      cfg.DTLSTimeout,
		DTLSLinger:       cfg.DTLSLinger,
		Observer:         n,
		QualitySample:    n.quality.observe,
		QualityInterval:  cfg.QualityInterval,
		Now:              cfg.Now,
		Logger:           cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if mode := n.eng.IOStats().Mode; mode == batchconn.ModeUring || cfg.IO == batchconn.ModeMmsg {
		n.log.Info("dataplane packet I/O", "io", mode)
	} else {
		n.log.Info("dataplane packet I/O", "io", mode, "io_uring", batchconn.UringUnavailable())
	}
	return n, nil
}

// LabelCall is the session label a control plane names the session's
// call with (package dpool sets it); the node logs it under
// logging.KeyCall, so that a call can be followed into the dataplane.
const LabelCall = "call"

// upper makes a fingerprint upper-case, as browsers write it in SDP.
func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

func (n *Node) now() time.Time {
	if n.cfg.Now != nil {
		return n.cfg.Now()
	}
	return time.Now()
}

// Engine exposes the relay engine (metrics, tests).
func (n *Node) Engine() *relay.Engine { return n.eng }

// Fingerprint is the node's certificate's SHA-256 fingerprint.
func (n *Node) Fingerprint() string { return n.fingerprint }

// Drain stops accepting sessions; existing ones run until deleted.
func (n *Node) Drain() { n.draining.Store(true) }

// Draining reports whether Drain was called.
func (n *Node) Draining() bool { return n.draining.Load() }

// Close deletes every session and stops the node; watchers' channels close.
func (n *Node) Close() error { return n.stop(n.eng.Close) }

// Abandon stops the node as Close does but tells no peer (relay's
// Engine.Abandon): the sessions a next process restores stay up at the
// peers' end.
func (n *Node) Abandon() error { return n.stop(n.eng.Abandon) }

func (n *Node) stop(closeEngine func() error) error {
	err := closeEngine()
	n.stopOnce.Do(func() { close(n.done) })
	n.mu.Lock()
	for w := range n.watchers {
		w.close()
		delete(n.watchers, w)
	}
	n.mu.Unlock()
	return err
}

// NodeInfo implements pb.Node.
func (n *Node) NodeInfo(context.Context) (*pb.NodeInfoResponse, error) {
	rc := n.eng.Config()
	info := &pb.NodeInfoResponse{
		Id:               n.cfg.ID,
		Version:          Version,
		Fingerprint:      &pb.Fingerprint{Algorithm: "sha-256", Value: n.fingerprint},
		WebrtcPorts:      portRange(rc.WebRTCPorts),
		RtpPorts:         portRange(rc.RTPPorts),
		PlainSharedPorts: portRange(rc.PlainSharedPorts),
		MaxSessions:      uint32(n.maxSessions()),
		Sessions:         uint32(n.eng.Len()),
		Draining:         n.draining.Load(),
		Workers:          uint32(rc.Workers),
		Totals:           n.eng.Totals(),
		EventsDropped:    n.dropped.Load(),
	}
	for i, a := range rc.Addrs {
		info.MediaAddresses = append(info.MediaAddresses, a.String())
		adv := a
		if i < len(rc.Advertised) && rc.Advertised[i].IsValid() {
			adv = rc.Advertised[i]
		}
		info.AdvertisedAddresses = append(info.AdvertisedAddresses, adv.String())
	}
	return info, nil
}

// maxSessions is the configured cap, or what the ports allow: each plain
// stream of a port-per-leg session takes a pair.
func (n *Node) maxSessions() int {
	if n.cfg.MaxSessions > 0 {
		return n.cfg.MaxSessions
	}
	return n.eng.Config().RTPPorts.Pairs() * len(n.cfg.MediaAddrs)
}

func portRange(r portalloc.Range) *pb.PortRange {
	if r == (portalloc.Range{}) {
		return nil
	}
	return &pb.PortRange{First: uint32(r.First), Last: uint32(r.Last)}
}

// CreateSession implements pb.Node.
func (n *Node) CreateSession(_ context.Context, req *pb.CreateSessionRequest) (*pb.Session, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "empty request")
	}
	if n.draining.Load() {
		return nil, status.Error(codes.FailedPrecondition, "node is draining")
	}
	if req.GetMediaTimeoutS() == 0 && n.cfg.MediaTimeout > 0 {
		req = cloneCreate(req)
		req.MediaTimeoutS = uint32(n.cfg.MediaTimeout / time.Second)
	}
	s, err := n.eng.CreateSession(req)
	if err != nil {
		return nil, err
	}
	n.log.Debug("session created", logging.KeySession, s.ID, logging.KeyCall, s.Labels[LabelCall], "labels", s.Labels)
	return s.Proto(), nil
}

// UpdateSession implements pb.Node.
func (n *Node) UpdateSession(_ context.Context, req *pb.UpdateSessionRequest) (*pb.Session, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "empty request")
	}
	s, err := n.eng.UpdateSession(req)
	if err != nil {
		return nil, err
	}
	return s.Proto(), nil
}

// DeleteSession implements pb.Node.
func (n *Node) DeleteSession(_ context.Context, req *pb.DeleteSessionRequest) (*pb.Session, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "empty request")
	}
	s, err := n.eng.DeleteSession(req.GetId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	n.log.Debug("session deleted", logging.KeySession, s.ID, logging.KeyCall, s.Labels[LabelCall], "reason", req.GetReason())
	return s.Proto(), nil
}

// GetSession implements pb.Node.
func (n *Node) GetSession(_ context.Context, id string) (*pb.Session, error) {
	s, ok := n.eng.Session(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no session %q", id)
	}
	return s.Proto(), nil
}

// ListSessions implements pb.Node.
func (n *Node) ListSessions(context.Context) ([]*pb.Session, error) {
	ss := n.eng.Sessions()
	out := make([]*pb.Session, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Proto())
	}
	return out, nil
}

func cloneCreate(req *pb.CreateSessionRequest) *pb.CreateSessionRequest {
	return proto.Clone(req).(*pb.CreateSessionRequest)
}

package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/dataplane/quality"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Defaults, each with its reason.
const (
	// DefaultBatchSize is how many datagrams one recvmmsg/sendmmsg moves.
	// 64 amortises the system call well past the point of diminishing
	// returns (BenchmarkLoopback32 vs 1 in batchconn) while a full batch
	// still fits in L2 (64 x 2 KiB).
	DefaultBatchSize = 64
	// BufferSize is each datagram buffer: an Ethernet MTU's worth of RTP
	// plus tailroom.
	BufferSize = 2048
	// Tailroom is kept free at the end of every buffer so that SRTP can
	// append its authentication tag (up to 16 bytes for AEAD_AES_128_GCM)
	// and SRTCP its 4-byte index plus tag in place (RFC 3711 section 3.4).
	Tailroom = 64
	// ConsentTimeout: a WebRTC peer that has sent no valid check for this
	// long is no longer sent to (RFC 7675 section 5.1: 30 s).
	ConsentTimeout = 30 * time.Second
	// DefaultMediaTimeout raises MEDIA_TIMEOUT after a minute of silence
	// from a leg that should be sending, as rtpengine's default does.
	DefaultMediaTimeout = 60 * time.Second
	// ReplayWindow is the SRTP/SRTCP replay window of inbound contexts
	// (RFC 3711 section 3.3.2 requires at least 64; libsrtp uses 128 to
	// survive the reordering of a busy path). replayWindow holds it.
	ReplayWindow = replayWindowBits
	// DefaultDTLSLinger keeps a completed handshake's association for the
	// peer's retransmissions: browsers retransmit a flight after 1 s,
	// doubling up to 60 s (RFC 6347 section 4.2.4.1), and give up long
	// before 30 s of silence.
	DefaultDTLSLinger = 30 * time.Second
)

// Config configures an Engine.
type Config struct {
	// Addrs are the media addresses to bind, IPv4 and/or IPv6; a leg picks
	// one with LegSpec.address_index. Required.
	Addrs []netip.Addr
	// Advertised are the addresses to announce (SDP, ICE candidates) for
	// Addrs, by index; a zero or missing entry announces the bound address.
	Advertised []netip.Addr
	// WebRTCPorts are the shared ports of WebRTC legs, bound on every
	// address by every worker (SO_REUSEPORT). Required.
	WebRTCPorts portalloc.Range
	// RTPPorts is the range of per-stream port pairs for plain legs.
	// Required.
	RTPPorts portalloc.Range
	// PlainSharedPorts are shared ports for plain streams in
	// PORT_MODE_SHARED, used as RTP/RTCP pairs (even/odd). Optional.
	PlainSharedPorts portalloc.Range
	// Workers is the number of packet workers; 0 means one per CPU.
	Workers int
	// BatchSize is datagrams per recvmmsg/sendmmsg; 0 means DefaultBatchSize.
	BatchSize int
	// IO chooses the workers' I/O: batchconn.ModeUring, ModeMmsg, or
	// ModeAuto (empty: io_uring where the kernel allows it).
	IO batchconn.Mode
	// Coalesce is, with io_uring, the longest a datagram waits for others
	// to join its round (0: none).
	Coalesce time.Duration
	// HotWait is, with io_uring, how long a worker waits for datagrams
	// keeping its Go scheduler slot (batchconn.LoopConfig.HotWait; 0:
	// none). The workers' Loops then raise GOMAXPROCS by one each, so
	// that everything else keeps its Ps while the workers wait.
	HotWait time.Duration
	// Socket tunes every media socket (buffers, DSCP).
	Socket batchconn.Options
	// Certificate is the node's DTLS certificate. Required.
	Certificate tls.Certificate
	// Fingerprint is Certificate's SHA-256 fingerprint as SDP writes it.
	Fingerprint string
	// MaxSessions refuses sessions beyond this many (0: no limit).
	MaxSessions int
	// DTLSTimeout bounds a handshake (0: dtlsleg.DefaultTimeout).
	DTLSTimeout time.Duration
	// DTLSLinger is how long a completed DTLS association stays readable
	// (0: DefaultDTLSLinger).
	DTLSLinger time.Duration
	// Observer receives events; it must not block. Optional.
	Observer Observer
	// QualitySample, if set, gets every interval's quality sample of every
	// stream (see QualityInterval) with its leg's kind and direction (out:
	// what the node sent, as the peer reported it). It is called from the
	// janitor and from DeleteSession and must not block. Optional.
	QualitySample func(kind pb.LegKind, out bool, s quality.Sample)
	// QualityInterval is how often each stream's quality is sampled (0:
	// QualityInterval; the janitor runs every second, so shorter is a
	// second).
	QualityInterval time.Duration
	// Now is the clock (tests fake it); nil means time.Now.
	Now func() time.Time
	// Logger gets what an operator must act on; nil means slog.Default().
	Logger *slog.Logger
}

// Observer receives session events. Event is called from packet workers
// and handshake goroutines and must return at once (queue, never block).
type Observer interface {
	Event(s *Session, leg int, typ pb.EventType, detail string)
}

func (c *Config) setDefaults() error {
	if len(c.Addrs) == 0 {
		return errors.New("relay: no media address")
	}
	for i, a := range c.Addrs {
		if !a.IsValid() {
			return fmt.Errorf("relay: media address %d is invalid", i)
		}
		c.Addrs[i] = a.Unmap()
	}
	if c.WebRTCPorts.First == 0 || c.WebRTCPorts.Last < c.WebRTCPorts.First {
		return fmt.Errorf("relay: bad WebRTC port range %v", c.WebRTCPorts)
	}
	if c.RTPPorts.Pairs() == 0 {
		return fmt.Errorf("relay: RTP port range %v holds no even/odd pair", c.RTPPorts)
	}
	if c.PlainSharedPorts != (portalloc.Range{}) && c.PlainSharedPorts.Pairs() == 0 {
		return fmt.Errorf("relay: shared plain port range %v holds no even/odd pair", c.PlainSharedPorts)
	}
	if overlap(c.WebRTCPorts, c.RTPPorts) || overlap(c.WebRTCPorts, c.PlainSharedPorts) || overlap(c.RTPPorts, c.PlainSharedPorts) {
		return errors.New("relay: WebRTC, RTP and shared plain port ranges must not overlap")
	}
	if len(c.Certificate.Certificate) == 0 {
		return errors.New("relay: no DTLS certificate")
	}
	// Overload must show as counted drops: every media socket reports
	// the kernel's receive-buffer drops (SO_RXQ_OVFL).
	c.Socket.CountDrops = true
	if c.Workers <= 0 {
		c.Workers = batchconn.StartProcs()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.DTLSLinger <= 0 {
		c.DTLSLinger = DefaultDTLSLinger
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.QualityInterval <= 0 {
		c.QualityInterval = QualityInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func overlap(a, b portalloc.Range) bool {
	if a == (portalloc.Range{}) || b == (portalloc.Range{}) {
		return false
	}
	return a.First <= b.Last && b.First <= a.Last
}

// advertised returns the address announced for media address i.
func (c *Config) advertised(i int) netip.Addr {
	if i < len(c.Advertised) && c.Advertised[i].IsValid() {
		return c.Advertised[i]
	}
	return c.Addrs[i]
}

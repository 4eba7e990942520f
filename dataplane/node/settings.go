package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/portalloc"
)

// Settings are a node's media settings as an operator gives them: YAML
// keys, flags and environment variables (internal/cliconfig reads the
// tags). strait-dataplane and the all-in-one strait (for its in-process
// node) embed this one struct, so both take the same settings under the
// same names; Config parses them, once, into a Config.
type Settings struct {
	// MediaIP are the addresses media sockets bind on, one IPv4 and one
	// IPv6 at most in practice. Example: [10.0.0.10].
	MediaIP []string `yaml:"media_ip" group:"Media addresses and ports" flag:"media-ip" usage:"address to bind media on; repeat for IPv4 and IPv6"`
	// PublicIP are announced in SDP instead of MediaIP, by index (1:1 NAT).
	PublicIP []string `yaml:"public_ip" flag:"public-ip" usage:"address to advertise in SDP for each --media-ip (1:1 NAT), in the same order"`
	// WebRTCPorts are the shared UDP ports of WebRTC legs.
	WebRTCPorts portalloc.Range `yaml:"webrtc_ports" flag:"webrtc-ports" usage:"shared UDP ports for WebRTC legs"`
	// RTPPorts are the UDP port pairs of plain legs (a pair per stream).
	RTPPorts portalloc.Range `yaml:"rtp_ports" flag:"rtp-ports" usage:"UDP port pairs for plain RTP legs"`
	// PlainSharedPorts are shared port pairs for plain legs in shared mode.
	PlainSharedPorts portalloc.Range `yaml:"plain_shared_ports" flag:"plain-shared-ports" usage:"shared UDP port pairs for plain legs in shared mode (optional)"`
	// Workers is the number of packet workers; 0 is one per CPU.
	Workers int `yaml:"workers" group:"Packet processing" flag:"workers" usage:"packet workers (0: one per CPU)"`
	// Batch is datagrams per receive and send call.
	Batch int `yaml:"batch" flag:"batch" usage:"datagrams per receive/send batch"`
	// IO is uring, mmsg or auto.
	IO string `yaml:"io" flag:"io" usage:"packet I/O: uring (io_uring), mmsg (recvmmsg/sendmmsg with epoll) or auto (uring where the kernel allows it)"`
	// Coalesce is, with io_uring, the longest a datagram waits for others.
	Coalesce time.Duration `yaml:"coalesce" flag:"coalesce" usage:"with io_uring, the longest a datagram waits for others to join its batch (0: none)"`
	// HotWait is, with io_uring, how long a worker waits for datagrams
	// while keeping its Go scheduler slot (see batchconn.LoopConfig).
	HotWait time.Duration `yaml:"hot_wait" flag:"hot-wait" usage:"with io_uring, how long a worker waits for datagrams before it yields its CPU slot to the Go scheduler (0: never; GOMAXPROCS is raised by one per hot-waiting worker)"`
	// MaxSessions refuses sessions beyond this many; 0: only ports limit.
	MaxSessions int `yaml:"max_sessions" group:"Sessions" flag:"max-sessions" usage:"refuse sessions beyond this many (0: only ports limit)"`
	// MediaTimeout is the silence after which a session's leg reports
	// MEDIA_TIMEOUT (a control plane then hangs the call up).
	MediaTimeout time.Duration `yaml:"media_timeout" flag:"media-timeout" usage:"silence after which a call's media times out (MEDIA_TIMEOUT; the call is hung up)"`
	// DTLSLinger keeps a completed DTLS handshake for retransmissions.
	DTLSLinger time.Duration `yaml:"dtls_linger" flag:"dtls-linger" usage:"how long a completed DTLS handshake's state is kept for the peer's retransmissions"`
	// SocketBuffer is SO_RCVBUF and SO_SNDBUF per media socket.
	SocketBuffer int `yaml:"socket_buffer" flag:"socket-buffer" usage:"SO_RCVBUF/SO_SNDBUF bytes per media socket (capped by net.core.rmem_max/wmem_max)"`
	// DSCP marks media packets (46 is EF); 0 leaves it unset.
	DSCP int `yaml:"dscp" flag:"dscp" usage:"DSCP of media packets (46 = EF; 0 leaves it unset)"`
}

// Defaults of Settings, with their reasons.
const (
	// DefaultBatch is what one recvmmsg round takes at most: enough to
	// amortise the system call at 100 000 packets/s, small enough to keep
	// a batch's latency far below a packet interval.
	DefaultBatch = 64
	// DefaultSocketBuffer absorbs a scheduling hiccup of a few
	// milliseconds at full rate on one socket.
	DefaultSocketBuffer = 4 << 20
	// DefaultHotWait covers the gap between datagrams of a worker that
	// carries ten calls or more (100 datagrams/s each): below that a
	// wake-up costs the runtime's thread hand-offs, which is cheap then.
	DefaultHotWait = time.Millisecond
	// DefaultDSCP is Expedited Forwarding (RFC 4594: telephony).
	DefaultDSCP = 46
	// DefaultMediaTimeout hangs up a call silent for a minute (a held call
	// still sends RTCP).
	DefaultMediaTimeout = 60 * time.Second
	// DefaultDTLSLinger matches relay.DefaultDTLSLinger.
	DefaultDTLSLinger = 30 * time.Second
)

// DefaultSettings are the settings both binaries start from.
func DefaultSettings() Settings {
	return Settings{
		MediaIP:      []string{"127.0.0.1"},
		WebRTCPorts:  DefaultWebRTCPorts,
		RTPPorts:     DefaultRTPPorts,
		Batch:        DefaultBatch,
		HotWait:      DefaultHotWait,
		IO:           string(batchconn.ModeAuto),
		MediaTimeout: DefaultMediaTimeout,
		DTLSLinger:   DefaultDTLSLinger,
		SocketBuffer: DefaultSocketBuffer,
		DSCP:         DefaultDSCP,
	}
}

// Config parses the settings into a node's Config (ID and Logger are the
// caller's to set). Every bad setting is reported, all at once, each
// error naming its flag and YAML key.
func (s *Settings) Config() (Config, error) {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", flag, yamlKey(flag), fmt.Sprintf(format, args...)))
	}
	c := Config{
		WebRTCPorts: s.WebRTCPorts, RTPPorts: s.RTPPorts, PlainSharedPorts: s.PlainSharedPorts,
		Workers: s.Workers, BatchSize: s.Batch, Coalesce: s.Coalesce, HotWait: s.HotWait, MaxSessions: s.MaxSessions,
		MediaTimeout: s.MediaTimeout, DTLSLinger: s.DTLSLinger,
		Socket: batchconn.Options{RecvBuffer: s.SocketBuffer, SendBuffer: s.SocketBuffer, TOS: s.DSCP << 2},
	}
	if len(s.MediaIP) == 0 {
		bad("media-ip", "at least one address")
	}
	for _, v := range s.MediaIP {
		a, err := netip.ParseAddr(v)
		if err != nil {
			bad("media-ip", "%q is not an IP address", v)
			continue
		}
		c.MediaAddrs = append(c.MediaAddrs, a.Unmap())
	}
	if len(s.PublicIP) > len(s.MediaIP) {
		bad("public-ip", "%d addresses for %d --media-ip", len(s.PublicIP), len(s.MediaIP))
	}
	for _, v := range s.PublicIP {
		a, err := netip.ParseAddr(v)
		if err != nil || a.IsUnspecified() || a.IsMulticast() {
			bad("public-ip", "%q is not a unicast IP address", v)
			continue
		}
		c.AdvertisedAddrs = append(c.AdvertisedAddrs, a.Unmap())
	}
	for i, a := range c.MediaAddrs {
		if a.IsUnspecified() && i >= len(s.PublicIP) {
			bad("media-ip", "%s is unspecified: give --public-ip so SDP names a reachable address", a)
		}
	}
	if s.WebRTCPorts.First == 0 || s.WebRTCPorts.Last < s.WebRTCPorts.First {
		bad("webrtc-ports", "%v is not a port range", s.WebRTCPorts)
	}
	if s.RTPPorts.Pairs() == 0 {
		bad("rtp-ports", "%v holds no even/odd port pair", s.RTPPorts)
	}
	if s.PlainSharedPorts != (portalloc.Range{}) && s.PlainSharedPorts.Pairs() == 0 {
		bad("plain-shared-ports", "%v holds no even/odd port pair", s.PlainSharedPorts)
	}
	if s.Workers < 0 || s.Workers > 1024 {
		bad("workers", "%d: want 0 (one per CPU) to 1024", s.Workers)
	}
	if s.Batch < 1 || s.Batch > 1024 {
		bad("batch", "%d: want 1 to 1024", s.Batch)
	}
	mode, err := batchconn.ParseMode(s.IO)
	if err != nil {
		bad("io", "%v", err)
	}
	c.IO = mode
	if s.Coalesce < 0 || s.Coalesce > time.Millisecond {
		bad("coalesce", "%v: want 0 to 1ms", s.Coalesce)
	}
	if s.HotWait < 0 || s.HotWait > 10*time.Millisecond {
		bad("hot-wait", "%v: want 0 to 10ms", s.HotWait)
	}
	if s.MaxSessions < 0 {
		bad("max-sessions", "%d is negative", s.MaxSessions)
	}
	if s.MediaTimeout < time.Second {
		bad("media-timeout", "%v: want at least 1s", s.MediaTimeout)
	}
	if s.DTLSLinger < 0 {
		bad("dtls-linger", "%v is negative", s.DTLSLinger)
	}
	if s.SocketBuffer < 0 || s.SocketBuffer > 1<<30 {
		bad("socket-buffer", "%d: want 0 (the system's default) to 1 GiB", s.SocketBuffer)
	}
	if s.DSCP < 0 || s.DSCP > 63 {
		bad("dscp", "%d: want 0 to 63", s.DSCP)
	}
	return c, errors.Join(errs...)
}

// yamlKey is a flag's YAML key.
func yamlKey(flag string) string {
	b := []byte(flag)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

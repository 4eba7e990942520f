// Package hep exports SIP messages to a Homer capture server in HEP
// version 3 (the Homer Encapsulation Protocol, as heplify and Kamailio's
// siptrace send it): each message Strait sends or receives, on every
// transport, is one UDP datagram of chunks (addresses, ports, time,
// capture agent id, password, payload).
//
// Export never slows the SIP path: Capture copies the message into a
// bounded queue and returns; when the queue is full the message is
// dropped and counted. One goroutine encodes and sends.
package hep

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Chunk types of HEP3 (vendor 0, the generic chunks), from the HEP3
// specification (HEP3_Network_Protocol_Specification_REV_36).
const (
	ChunkIPFamily      = 0x0001 // uint8: 2 IPv4, 10 IPv6
	ChunkIPProto       = 0x0002 // uint8: 6 TCP, 17 UDP
	ChunkIPv4Src       = 0x0003 // 4 bytes
	ChunkIPv4Dst       = 0x0004
	ChunkIPv6Src       = 0x0005 // 16 bytes
	ChunkIPv6Dst       = 0x0006
	ChunkSrcPort       = 0x0007 // uint16
	ChunkDstPort       = 0x0008
	ChunkTimeSec       = 0x0009 // uint32, Unix seconds
	ChunkTimeUsec      = 0x000a // uint32, microseconds within the second
	ChunkProtoType     = 0x000b // uint8: 1 SIP
	ChunkCaptureID     = 0x000c // uint32
	ChunkAuthKey       = 0x000e // the capture server's password
	ChunkPayload       = 0x000f // the captured message
	ChunkCorrelationID = 0x0011 // the SIP Call-ID, for Homer to group by
)

// Protocol types of a payload (ChunkProtoType).
const (
	// ProtoSIP is a SIP message.
	ProtoSIP = 1
	// ProtoRTCPJSON is an RTCP report as JSON, as heplify and rtpengine
	// send it and Homer decodes it (type, ssrc, sender_information,
	// report_blocks with fraction_lost, packets_lost, ia_jitter, lsr,
	// dlsr).
	ProtoRTCPJSON = 5
)

// Message is one captured message.
type Message struct {
	// Src and Dst are the message's addresses (for a message Strait
	// sent, Src is Strait's).
	Src, Dst netip.AddrPort
	// TCP is true for a stream transport (TCP, TLS, WebSocket).
	TCP bool
	// Time is when the message was sent or received.
	Time time.Time
	// Payload is the SIP message; CallID its Call-ID, when known.
	Payload []byte
	CallID  string
	// Proto is the payload's protocol type; 0 means ProtoSIP.
	Proto uint8
}

// Append appends m as a HEP3 packet to dst, with the capture agent id and
// password (none when empty), and returns the extended slice.
func Append(dst []byte, m Message, captureID uint32, password string) []byte {
	start := len(dst)
	dst = append(dst, 'H', 'E', 'P', '3', 0, 0) // length filled in last
	u8 := func(t uint16, v uint8) { dst = appendChunk(dst, t, []byte{v}) }
	u16 := func(t uint16, v uint16) { dst = appendChunk(dst, t, binary.BigEndian.AppendUint16(nil, v)) }
	u32 := func(t uint16, v uint32) { dst = appendChunk(dst, t, binary.BigEndian.AppendUint32(nil, v)) }
	src, dstAddr := m.Src.Addr().Unmap(), m.Dst.Addr().Unmap()
	if src.Is4() && dstAddr.Is4() {
		u8(ChunkIPFamily, 2)
		s4, d4 := src.As4(), dstAddr.As4()
		dst = appendChunk(dst, ChunkIPv4Src, s4[:])
		dst = appendChunk(dst, ChunkIPv4Dst, d4[:])
	} else {
		u8(ChunkIPFamily, 10)
		s16, d16 := src.As16(), dstAddr.As16()
		dst = appendChunk(dst, ChunkIPv6Src, s16[:])
		dst = appendChunk(dst, ChunkIPv6Dst, d16[:])
	}
	proto := uint8(17)
	if m.TCP {
		proto = 6
	}
	u8(ChunkIPProto, proto)
	u16(ChunkSrcPort, m.Src.Port())
	u16(ChunkDstPort, m.Dst.Port())
	u32(ChunkTimeSec, uint32(m.Time.Unix()))
	u32(ChunkTimeUsec, uint32(m.Time.Nanosecond()/1000))
	pt := m.Proto
	if pt == 0 {
		pt = ProtoSIP
	}
	u8(ChunkProtoType, pt)
	u32(ChunkCaptureID, captureID)
	if password != "" {
		dst = appendChunk(dst, ChunkAuthKey, []byte(password))
	}
	if m.CallID != "" {
		dst = appendChunk(dst, ChunkCorrelationID, []byte(m.CallID))
	}
	dst = appendChunk(dst, ChunkPayload, m.Payload)
	binary.BigEndian.PutUint16(dst[start+4:], uint16(len(dst)-start))
	return dst
}

func appendChunk(dst []byte, typ uint16, v []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, 0) // vendor: generic
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(6+len(v)))
	return append(dst, v...)
}

// MaxPayload bounds a captured message: a HEP3 packet's length is 16 bits
// and the datagram must leave room for the other chunks.
const MaxPayload = 65000

// DefaultQueue is how many messages may wait to be sent: a few seconds
// of a busy SBC's signalling, a few MB at most.
const DefaultQueue = 4096

// Config configures an Exporter.
type Config struct {
	// URL is udp://HOST:PORT of the capture server (Homer's heplify-server
	// listens on 9060).
	URL string
	// CaptureID is the capture agent id Homer shows per node.
	CaptureID uint32
	// Password is the capture server's password; empty sends none.
	Password string
	// Queue bounds the messages waiting to be sent; 0 is DefaultQueue.
	Queue int
}

// ParseURL checks a --hep value and returns its host:port.
func ParseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "udp" || u.Host == "" || u.Port() == "" || u.Path != "" {
		return "", fmt.Errorf("%q: want udp://HOST:PORT", s)
	}
	return u.Host, nil
}

// Exporter sends captured messages. Capture may be called from any
// goroutine; Close stops it.
type Exporter struct {
	cfg   Config
	conn  net.Conn
	queue chan Message

	sent, dropped, failed atomic.Uint64

	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the sender has returned
}

// New connects the exporter (UDP: nothing is sent yet) and starts its
// sender.
func New(cfg Config) (*Exporter, error) {
	addr, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("hep: %w", err)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	e := &Exporter{cfg: cfg, conn: conn, queue: make(chan Message, cfg.Queue), stop: make(chan struct{}), done: make(chan struct{})}
	go e.send()
	return e, nil
}

// Capture queues a copy of m, or counts it dropped when the queue is full
// or the message too large. It never blocks.
func (e *Exporter) Capture(m Message) {
	if len(m.Payload) > MaxPayload {
		e.dropped.Add(1)
		return
	}
	m.Payload = append([]byte(nil), m.Payload...)
	select {
	case e.queue <- m:
	default:
		e.dropped.Add(1)
	}
}

func (e *Exporter) send() {
	defer close(e.done)
	buf := make([]byte, 0, 2048)
	write := func(m Message) {
		buf = Append(buf[:0], m, e.cfg.CaptureID, e.cfg.Password)
		if _, err := e.conn.Write(buf); err != nil {
			e.failed.Add(1) // e.g. ICMP port unreachable from a previous send
			return
		}
		e.sent.Add(1)
	}
	for {
		select {
		case m := <-e.queue:
			write(m)
		case <-e.stop:
			for { // what was queued before Close
				select {
				case m := <-e.queue:
					write(m)
				default:
					return
				}
			}
		}
	}
}

// Stats are the exporter's counters.
type Stats struct{ Sent, Dropped, Failed uint64 }

// Stats returns the counters so far.
func (e *Exporter) Stats() Stats {
	return Stats{Sent: e.sent.Load(), Dropped: e.dropped.Load(), Failed: e.failed.Load()}
}

// Close sends what is queued and stops; messages captured after it are
// dropped.
func (e *Exporter) Close() error {
	var err error
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.done
		err = e.conn.Close()
	})
	return err
}

package mediatest

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Packet is a datagram a Plain peer received, decrypted when SDES is on.
type Packet struct {
	From netip.AddrPort
	RTP  *rtp.Packet   // nil for RTCP
	RTCP []rtcp.Packet // nil for RTP
	Raw  []byte
}

// Plain is a plain RTP endpoint as a PBX is one: an RTP port and, unless
// muxed, an RTCP port next to it; optionally SDES-SRTP.
type Plain struct {
	RTP, RTCP *net.UDPConn
	// Received delivers what arrives on either port.
	Received chan Packet

	mu       sync.Mutex
	enc, dec *srtp.Context
	hdr      rtp.Header
	closed   chan struct{}
}

// NewPlain opens a plain endpoint on addr (port 0 picks one; the RTCP port
// is then any free port too, not necessarily +1: use RTCPAddr).
func NewPlain(addr netip.Addr) (*Plain, error) {
	r, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		r.Close()
		return nil, err
	}
	p := &Plain{RTP: r, RTCP: c, Received: make(chan Packet, 4096), closed: make(chan struct{})}
	go p.read(r)
	go p.read(c)
	return p, nil
}

// UseSDES turns on SRTP with the given key||salt pairs: local encrypts what
// the peer sends, remote decrypts what it receives.
func (p *Plain) UseSDES(profile srtp.ProtectionProfile, local, remote []byte) error {
	kl, _ := profile.KeyLen()
	enc, err := srtp.CreateContext(local[:kl], local[kl:], profile)
	if err != nil {
		return err
	}
	dec, err := srtp.CreateContext(remote[:kl], remote[kl:], profile, srtp.SRTPReplayProtection(128))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.enc, p.dec = enc, dec
	p.mu.Unlock()
	return nil
}

// Addr is the RTP address; RTCPAddr the RTCP one.
func (p *Plain) Addr() netip.AddrPort { return p.RTP.LocalAddr().(*net.UDPAddr).AddrPort() }

// RTCPAddr is the RTCP port's address.
func (p *Plain) RTCPAddr() netip.AddrPort { return p.RTCP.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *Plain) read(c *net.UDPConn) {
	for {
		buf := make([]byte, 2048)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		raw := buf[:n]
		pk := Packet{From: from, Raw: raw}
		isRTCP := n >= 2 && raw[1] >= 192 && raw[1] <= 223
		p.mu.Lock()
		dec := p.dec
		if dec != nil {
			var out []byte
			if isRTCP {
				out, err = dec.DecryptRTCP(nil, raw, nil)
			} else {
				out, err = dec.DecryptRTP(nil, raw, &p.hdr)
			}
			if err == nil {
				raw = out
			}
		}
		p.mu.Unlock()
		if err != nil {
			continue
		}
		if isRTCP {
			pk.RTCP, err = rtcp.Unmarshal(raw)
		} else {
			pk.RTP = &rtp.Packet{}
			err = pk.RTP.Unmarshal(raw)
		}
		if err != nil {
			continue
		}
		select {
		case p.Received <- pk:
		default:
		}
	}
}

// SendRTP sends pkt to to (from the RTP port), encrypted under SDES.
func (p *Plain) SendRTP(to netip.AddrPort, pkt *rtp.Packet) error {
	raw, err := pkt.Marshal()
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.enc != nil {
		raw, err = p.enc.EncryptRTP(nil, raw, nil)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = p.RTP.WriteToUDPAddrPort(raw, to)
	return err
}

// SendRTCP sends a compound RTCP packet to to from the RTCP port (from the
// RTP port when mux).
func (p *Plain) SendRTCP(to netip.AddrPort, mux bool, pkts ...rtcp.Packet) error {
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.enc != nil {
		raw, err = p.enc.EncryptRTCP(nil, raw, nil)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	c := p.RTCP
	if mux {
		c = p.RTP
	}
	_, err = c.WriteToUDPAddrPort(raw, to)
	return err
}

// Next waits for the next received packet matching keep.
func (p *Plain) Next(timeout time.Duration, keep func(Packet) bool) (Packet, error) {
	deadline := time.After(timeout)
	for {
		select {
		case pk := <-p.Received:
			if keep == nil || keep(pk) {
				return pk, nil
			}
		case <-deadline:
			return Packet{}, errors.New("mediatest: nothing received in time")
		}
	}
}

// Close closes both ports.
func (p *Plain) Close() {
	p.RTP.Close()
	p.RTCP.Close()
}

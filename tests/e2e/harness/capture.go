package harness

import (
	"fmt"
	"sync"
	"time"
)

// Capture counts the UDP datagrams on the loopback interface while a test
// runs, per destination port, and the RTP payload types among them: what a
// PBX stand-in (sipp) received, without asking sipp. It needs a packet
// socket (root, or CAP_NET_RAW), which the network-namespace mode has.
type Capture struct {
	mu    sync.Mutex
	ports map[int]*PortCount
	stop  func()
}

// PortCount is what a Capture saw sent to one UDP port.
type PortCount struct {
	Packets int
	// From counts the datagrams by source port; SSRC the RTP ones by SSRC.
	From map[int]int
	SSRC map[uint32]int
	// RTP counts the datagrams that look like RTP (version 2, not RTCP),
	// by payload type.
	RTP map[uint8]int
	// Events holds the RFC 4733 telephone-events seen, in order, one entry
	// per event (the first packet of each): the event code (0-9, 10 = *, 11 = #).
	Events []int
	// MaxGap is the longest time between two RTP packets to the port
	// since the first one, or since Capture.ResetGaps (as the capture
	// reads them: a media gap, to within the capture's own latency).
	MaxGap time.Duration
	// lastEventTS dedups the retransmitted packets of one event.
	lastEventTS uint32
	lastRTP     time.Time
}

// StartCapture starts counting, or returns an error when packet capture is
// not available; the test then checks media from the browser's side only.
// The capture stops at the end of the test.
func (e *Env) StartCapture(eventPTs ...uint8) (*Capture, error) {
	c := &Capture{ports: map[int]*PortCount{}}
	stop, err := startCapture(func(sport, dport int, payload []byte) { c.add(sport, dport, payload, eventPTs) })
	if err != nil {
		return nil, fmt.Errorf("packet capture unavailable: %w", err)
	}
	c.stop = stop
	e.t.Cleanup(stop)
	return c, nil
}

func (c *Capture) add(sport, dport int, p []byte, eventPTs []uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.ports[dport]
	if pc == nil {
		pc = &PortCount{RTP: map[uint8]int{}, From: map[int]int{}, SSRC: map[uint32]int{}}
		c.ports[dport] = pc
	}
	pc.Packets++
	pc.From[sport]++
	if len(p) < 12 || p[0]>>6 != 2 {
		return
	}
	pt := p[1] & 0x7f
	if pt >= 72 && pt <= 76 { // RTCP 200-204 with the marker bit's place, RFC 5761 section 4
		return
	}
	pc.RTP[pt]++
	now := time.Now()
	if !pc.lastRTP.IsZero() {
		pc.MaxGap = max(pc.MaxGap, now.Sub(pc.lastRTP))
	}
	pc.lastRTP = now
	pc.SSRC[uint32(p[8])<<24|uint32(p[9])<<16|uint32(p[10])<<8|uint32(p[11])]++
	for _, ev := range eventPTs {
		if pt != ev || len(p) < 16 {
			continue
		}
		ts := uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7])
		if len(pc.Events) == 0 || ts != pc.lastEventTS {
			pc.Events = append(pc.Events, int(p[12]))
			pc.lastEventTS = ts
		}
	}
}

// Port returns a copy of what was sent to port so far.
func (c *Capture) Port(port int) PortCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.ports[port]
	if pc == nil {
		return PortCount{RTP: map[uint8]int{}, From: map[int]int{}, SSRC: map[uint32]int{}}
	}
	out := *pc
	out.RTP = make(map[uint8]int, len(pc.RTP))
	for k, v := range pc.RTP {
		out.RTP[k] = v
	}
	out.From = make(map[int]int, len(pc.From))
	for k, v := range pc.From {
		out.From[k] = v
	}
	out.SSRC = make(map[uint32]int, len(pc.SSRC))
	for k, v := range pc.SSRC {
		out.SSRC[k] = v
	}
	out.Events = append([]int(nil), pc.Events...)
	return out
}

// ResetGaps starts every port's MaxGap again from its next RTP packet.
func (c *Capture) ResetGaps() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pc := range c.ports {
		pc.MaxGap, pc.lastRTP = 0, time.Time{}
	}
}

// Ports returns the totals over the port range [low, high] (MaxGap: the
// longest of the ports').
func (c *Capture) Ports(low, high int) PortCount {
	sum := PortCount{RTP: map[uint8]int{}}
	for p := low; p <= high; p++ {
		pc := c.Port(p)
		sum.Packets += pc.Packets
		for k, v := range pc.RTP {
			sum.RTP[k] += v
		}
		sum.Events = append(sum.Events, pc.Events...)
		sum.MaxGap = max(sum.MaxGap, pc.MaxGap)
	}
	return sum
}

// DTMFDigits renders RFC 4733 event codes as the digits they stand for.
func DTMFDigits(events []int) string {
	const digits = "0123456789*#ABCD"
	var b []byte
	for _, e := range events {
		if e >= 0 && e < len(digits) {
			b = append(b, digits[e])
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

package b2bua

import (
	"encoding/json"
	"math"
	"net/netip"
	"time"

	"github.com/strait-sbc/strait/controlplane/hep"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// rtcpJSON is an RTCP receiver report as Homer decodes HEP type 5 payloads
// (the JSON heplify and rtpengine send), plus Strait's own figures for the
// interval under "strait" (Homer keeps what it does not chart).
type rtcpJSON struct {
	Type        int            `json:"type"` // 201: RR
	SSRC        uint32         `json:"ssrc"`
	ReportCount int            `json:"report_count"`
	Blocks      []rtcpJSONBlok `json:"report_blocks"`
	Strait      rtcpJSONStrait `json:"strait"`
}

type rtcpJSONBlok struct {
	SourceSSRC   uint32 `json:"source_ssrc"`
	FractionLost int    `json:"fraction_lost"` // 1/256
	PacketsLost  int64  `json:"packets_lost"`
	HighestSeq   uint64 `json:"highest_seq_no"`
	IAJitter     uint32 `json:"ia_jitter"` // RTP timestamp units (8 kHz)
	LSR          uint32 `json:"lsr"`
	DLSR         uint32 `json:"dlsr"`
}

type rtcpJSONStrait struct {
	Call      string  `json:"call"`
	Leg       int     `json:"leg"`
	Direction string  `json:"direction"`
	Loss      float64 `json:"loss"`
	JitterMs  float64 `json:"jitter_ms"`
	RTTMs     float64 `json:"rtt_ms,omitempty"`
	MOS       float64 `json:"mos"`
}

// hepQuality sends each leg's latest quality interval, both directions, to
// the HEP collector as RTCP JSON reports: "in" as the report Strait would
// send the leg's peer about its media (from Strait's media address to the
// peer's), "out" as the peer's own report (from the peer to Strait). The
// correlation id is the leg's SIP Call-ID (the call's id for a leg without
// a dialog), so Homer shows them beside the call's SIP.
func (e *Engine) hepQuality(c *Call, s *pb.Session, now time.Time) {
	info := c.Info()
	for i, l := range s.GetLegs() {
		if len(l.GetStreams()) == 0 {
			continue
		}
		st := l.GetStreams()[0]
		q := st.GetQuality()
		local, _ := netip.ParseAddrPort(st.GetLocalAddr())
		remote, _ := netip.ParseAddrPort(l.GetRemoteAddr())
		if !remote.IsValid() {
			remote, _ = netip.ParseAddrPort(st.GetRemoteAddr())
		}
		if !local.IsValid() || !remote.IsValid() {
			continue
		}
		corr := c.ID
		if i < len(info.sipCallIDs) && info.sipCallIDs[i] != "" {
			corr = info.sipCallIDs[i]
		}
		for _, d := range []struct {
			name     string
			dq       *pb.DirectionQuality
			src, dst netip.AddrPort
		}{{"in", q.GetIn(), local, remote}, {"out", q.GetOut(), remote, local}} {
			last := d.dq.GetLast()
			if last == nil || last.GetUnixNano() <= now.Add(-2*e.cfg.InterimInterval).UnixNano() {
				continue // nothing measured lately
			}
			r := rtcpJSON{Type: 201, ReportCount: 1, Blocks: []rtcpJSONBlok{{
				FractionLost: int(math.Round(last.GetLoss() * 255)),
				PacketsLost:  d.dq.GetPacketsLost(),
				IAJitter:     uint32(last.GetJitterMs() * 8),
			}}, Strait: rtcpJSONStrait{Call: c.ID, Leg: i, Direction: d.name, Loss: last.GetLoss(),
				JitterMs: last.GetJitterMs(), RTTMs: last.GetRttMs(), MOS: last.GetMos()}}
			if d.name == "in" {
				r.Blocks[0].HighestSeq = q.GetReceived().GetExpected()
			}
			b, err := json.Marshal(r)
			if err != nil {
				continue
			}
			e.cfg.HEP.Capture(hep.Message{Src: d.src, Dst: d.dst, Time: now, Payload: b, CallID: corr, Proto: hep.ProtoRTCPJSON})
		}
	}
}

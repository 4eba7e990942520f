package relay

import (
	"slices"

	"github.com/strait-sbc/strait/dataplane/rewrite"
	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// The SRTP and SRTCP indexes a restored session may use: what Save
// records of each SSRC's contexts and how the restore applies it, so that
// no index is used twice under the same keys (see "No index twice" in
// restore.go; RFC 3711 section 9.2, RFC 7714 sections 8.1 and 16).

// srtcpStep is the granularity of SavedSSRC.SRTCPTop: the floor moves
// once per srtcpStep SRTCP packets (about 17 minutes at one a second), so
// the saved form does not change with every report.
const srtcpStep = 1024

// srtpIndexStep is the granularity of SavedSSRC.EncNext, the outbound
// sequence numbers' (rewrite.ResumeStep), so that both move together.
const srtpIndexStep = rewrite.ResumeStep

// decIndexStep is the granularity of SavedSSRC.DecIndex: the ROC estimate
// from it follows a sender up to 2^15 ahead (RFC 3711 section 3.3.1), so
// a record a step old still leaves half a wrap of room, and the record
// changes once per 16 384 packets received (5.5 minutes at 50 a second).
const decIndexStep = 1 << 14

// srtpNext is SavedSSRC.EncNext for a context whose highest SRTP index
// sent is idx: two steps up, so that a record written up to a step late
// is still above every index used (RFC 3711 section 9.2).
func srtpNext(idx uint64) uint64 { return (idx/srtpIndexStep + 2) * srtpIndexStep }

// srtcpNext is SavedSSRC.SRTCPTop for a context whose last SRTCP index
// is idx, two steps up for the same reason; below 2^31 (section 3.4).
func srtcpNext(idx uint32) uint32 {
	return uint32(min((uint64(idx)/srtcpStep+2)*srtcpStep, 1<<31-1))
}

// candidateSSRCs are the SSRCs a leg's SRTP contexts can know: its
// streams' own, the peer's last seen on them, and what their outbound
// numbering maps. Called with l.outMu held (Stream.out).
func candidateSSRCs(l *Leg) []uint32 {
	var out []uint32
	add := func(v uint32) {
		for _, x := range out {
			if x == v {
				return
			}
		}
		out = append(out, v)
	}
	for _, st := range l.streams {
		add(st.localSSRC)
		if v := st.inSSRC.Load(); v != 0 {
			add(v)
		}
		if m := st.out.Mapping(); m.Active {
			add(m.InSSRC)
			add(m.OutSSRC)
		}
	}
	return out
}

// ssrcStates reads the rollover state of the SSRCs the leg's contexts can
// know from its pair of contexts (st nil) or stream st's (SDES). The
// direction locks are taken one after the other, never nested.
func (l *Leg) ssrcStates(st *Stream) []SavedSSRC {
	l.outMu.Lock()
	ssrcs := candidateSSRCs(l)
	enc := l.enc
	if st != nil {
		enc = st.enc
	}
	states := make([]SavedSSRC, len(ssrcs))
	for i, v := range ssrcs {
		sv := &states[i]
		sv.SSRC = v
		if enc != nil {
			sv.EncROC, sv.HasEnc = enc.ROC(v)
			if idx, ok := enc.SRTPIndex(v); ok {
				sv.EncNext = srtpNext(idx)
			}
			if idx, ok := enc.Index(v); ok {
				sv.SRTCPTop = srtcpNext(idx)
			}
		}
	}
	l.outMu.Unlock()
	l.inMu.Lock()
	dec := l.dec
	if st != nil {
		dec = st.dec
	}
	if dec != nil {
		for i := range states {
			states[i].DecROC, states[i].HasDec = dec.ROC(states[i].SSRC)
			if idx, ok := dec.SRTPIndex(states[i].SSRC); ok {
				states[i].DecIndex = idx &^ (decIndexStep - 1)
			}
		}
	}
	l.inMu.Unlock()
	out := states[:0]
	for _, sv := range states {
		if sv.HasDec || sv.HasEnc || sv.SRTCPTop != 0 {
			out = append(out, sv)
		}
	}
	return out
}

// applySSRCs sets saved rollover state on a fresh pair of contexts: the
// encrypting one never goes below the saved floors (RFC 3711 section 9.2,
// RFC 7714 section 8.1; see "No index twice" above). sends are the SSRCs
// the encrypting context may have sent with (the streams' own, those they
// relay): one the record holds no SRTCP index for (it may predate the
// first report: the record's stamp moves once per srtcpStep reports)
// numbers SRTCP on from srtcpStep, above any report sent meanwhile.
func applySSRCs(dec, enc *srtp.Context, states []SavedSSRC, sends []uint32) {
	if enc != nil {
		for _, v := range sends {
			if !slices.ContainsFunc(states, func(sv SavedSSRC) bool { return sv.SSRC == v && sv.SRTCPTop != 0 }) {
				enc.SetIndex(v, srtcpStep)
			}
		}
	}
	for _, sv := range states {
		if dec != nil {
			switch {
			case sv.DecIndex != 0:
				dec.SetSRTPIndex(sv.SSRC, sv.DecIndex)
			case sv.HasDec:
				dec.SetROC(sv.SSRC, sv.DecROC)
			}
		}
		if enc != nil {
			switch {
			case sv.EncNext != 0:
				enc.SetSRTPIndexFloor(sv.SSRC, sv.EncNext)
			case sv.HasEnc:
				enc.SetROC(sv.SSRC, sv.EncROC)
			}
			if sv.SRTCPTop != 0 {
				enc.SetIndex(sv.SSRC, sv.SRTCPTop)
			} else {
				enc.SetIndex(sv.SSRC, srtcpStep) // as for sends
			}
		}
	}
}

// restoredSenders are the SSRCs streams (restored from saved) may have
// sent SRTP and SRTCP with: their own, and the ones they relayed.
func restoredSenders(streams []*Stream, saved []SavedStream) []uint32 {
	var out []uint32
	for j, st := range streams {
		out = append(out, st.localSSRC)
		if j < len(saved) && saved[j].Out != nil {
			out = append(out, saved[j].Out.InSSRC)
		}
	}
	return out
}

// resumeAbove is the sequence number an outbound stream resumes at (its
// Resumption's OutCeiling): the saved one, or, if later, that of the SRTP
// floor of the SSRC it sends (its own when it rewrites SSRCs, the one it
// relays otherwise), so that its packets are not refused as below the
// floor (srtp.ErrIndexBelowFloor) for thousands of packets.
func resumeAbove(r rewrite.Resumption, rewriteSSRC bool, localSSRC uint32, states []SavedSSRC) uint16 {
	out := r.InSSRC
	if rewriteSSRC {
		out = localSSRC
	}
	for _, sv := range states {
		if sv.SSRC == out && sv.EncNext != 0 {
			if floor := uint16(sv.EncNext); int16(floor-r.OutCeiling) > 0 {
				return floor
			}
		}
	}
	return r.OutCeiling
}

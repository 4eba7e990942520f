package relay

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/demux"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Where a plain stream accepts media from.
//
// A plain leg has no ICE to prove who its peer is, so anyone who finds its
// port can send to it; a relay that then sends the call's media to whoever
// sent last gives it away (RTP bleed: CVE-2017-14099 for Asterisk,
// CVE-2025-53399 for rtpengine). The SDP address is what the peer said,
// through signalling the control plane trusts; learning another source
// (symmetric RTP, RFC 4961) is for a peer behind NAT, whose SDP names a
// private address. Strait's rules, per stream and per component (RTP,
// RTCP), within one negotiation (streamConfig.epoch):
//
//  1. Packets from the SDP address are accepted and win at once: the stream
//     sends there from then on, whatever it had learnt.
//  2. A strict stream (strict_source, every shared port) accepts nothing
//     else.
//  3. Once a source is learnt, nothing else is accepted until a new
//     negotiation, except the SDP address (rule 1).
//  4. Nothing is learnt before the SDP gives an address, nor from an address
//     of an earlier negotiation (after a re-INVITE moves the peer's media,
//     its stale packets must not win the stream back; issue 9 item 7).
//  5. The signalling peer's IP (PlainSpec.signalling_ip: the NAT's public
//     address the SIP came from) is learnt at once; so is, for RTCP, the IP
//     RTP was learnt from.
//  6. Any other source is learnt only when the SDP address is one a peer
//     behind NAT writes (private, shared or link-local: see natted), only
//     after it stayed silent for learnDelay since the negotiation, and then
//     only after learnRun RTP packets in sequence from that source
//     (Asterisk's strictrtp=seqno; rtpengine waits 3 s in its delayed and
//     heuristic modes, and ranks the SDP address first, as rule 1 does).
//     A public SDP address is where the peer is: a PBX that only answers
//     media (an echo, a conference waiting for audio) would otherwise lose
//     its stream to whoever sprays the port range while it is silent.
//
// With SDES, a source is learnt only from a packet that authenticates
// (CVE-2025-53399: rtpengine latched onto spoofed SRTP before checking it);
// each packet of a learning run must authenticate too.
//
// rtpengine's strict-source is rule 2 and its media-handover the opposite
// of rule 3; Strait never hands media over to a new source without a new
// negotiation, except to the address the negotiation named.
const (
	learnRun   = 4
	learnDelay = time.Second
)

// learner is rule 6's state: the source of the current run of in-sequence
// packets. One per stream (RTP only), owned by the worker that serves the
// stream's own port (the session's owner: shared ports never learn).
type learner struct {
	epoch uint32
	addr  netip.AddrPort
	seq   uint16
	run   uint8
}

// step records an RTP packet (sequence number seq) from addr in epoch and
// reports whether addr has now sent learnRun packets in a row.
func (ln *learner) step(epoch uint32, addr netip.AddrPort, seq uint16) bool {
	if ln.epoch == epoch && ln.addr == addr && seq == ln.seq+1 {
		if ln.run < learnRun {
			ln.run++
		}
	} else {
		*ln = learner{epoch: epoch, addr: addr, run: 1}
	}
	ln.seq = seq
	return ln.run >= learnRun
}

// verdict is what the source rules say about a datagram.
type verdict uint8

const (
	srcDrop      verdict = iota // not the stream's peer
	srcAccept                   // the learnt source
	srcLearn                    // to be learnt once the packet proves itself (SDES)
	srcCandidate                // a step of rule 6: learnt if the run completes
)

// judge applies the rules above to a datagram from addr on component i
// (0 RTP port, 1 RTCP port) of stream st under negotiation sc.
func (st *Stream) judge(sc *streamConfig, i int, isRTCP bool, addr netip.AddrPort, now int64) verdict {
	expected := sc.remote
	if i == 1 {
		expected = sc.remoteRTCP
	}
	cur := st.latched(i, sc)
	switch {
	case expected.IsValid() && addr == expected: // rule 1
		if cur != nil && cur.addr == addr {
			return srcAccept
		}
		return srcLearn
	case sc.strict: // rule 2
		return srcDrop
	case cur != nil: // rule 3
		if cur.addr == addr {
			return srcAccept
		}
		return srcDrop
	case !sc.remote.IsValid() || sc.isRetired(addr): // rule 4
		return srcDrop
	case sc.sigIP.IsValid() && addr.Addr() == sc.sigIP: // rule 5
		return srcLearn
	case isRTCP:
		if rtp := st.latched(0, sc); i == 1 && rtp != nil && rtp.addr.Addr() == addr.Addr() {
			return srcLearn // rule 5: RTCP from where RTP comes from
		}
		return srcDrop
	case !sc.natted || now-sc.since < int64(learnDelay): // rule 6
		return srcDrop
	}
	return srcCandidate
}

// fromPlain checks the source of a datagram on a plain stream's port and
// relays it. shared means the stream was found by the exact source address
// (its SDP address: shared ports are strict).
func (w *worker) fromPlain(st *Stream, rtcpPort, shared bool, m *batchconn.Message) {
	l := st.leg
	var isRTCP bool
	switch demux.Classify(m.Buf[:m.N]) {
	case demux.RTP:
	case demux.RTCP:
		isRTCP = true
	default:
		l.ctr.drop[pb.DropMalformed].Add(1) // no STUN or DTLS on plain legs
		return
	}
	if shared {
		w.media(l, st, m, isRTCP)
		return
	}
	cfg := l.sess.cfg.Load()
	if st.index >= len(cfg.legs[l.index].streams) {
		l.ctr.drop[pb.DropDirection].Add(1)
		return
	}
	sc := &cfg.legs[l.index].streams[st.index]
	i := 0
	if rtcpPort {
		i = 1
	}
	v := st.judge(sc, i, isRTCP, m.Addr, w.now)
	switch v {
	case srcDrop:
		l.ctr.drop[pb.DropUnknownSource].Add(1)
		return
	case srcAccept:
		w.media(l, st, m, isRTCP)
		return
	}
	// Learning: the packet proves itself first (it authenticates, and for
	// rule 6 completes a run), then its source is latched for the rest of
	// the negotiation. Rare: once per negotiation and component.
	n, ok := w.unprotect(l, st, m.Buf, m.N, isRTCP)
	if !ok {
		return // counted (authentication, replay)
	}
	if v == srcCandidate && !st.learn.step(sc.epoch, m.Addr, binary.BigEndian.Uint16(m.Buf[2:4])) {
		l.ctr.drop[pb.DropUnknownSource].Add(1)
		return
	}
	st.latch[i].Store(&source{m.Addr, sc.epoch})
	w.relay(l, st, m.Buf, n, isRTCP)
}

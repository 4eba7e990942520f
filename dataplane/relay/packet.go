package relay

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/demux"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// This file is the per-packet path. Nothing here allocates, locks a table
// or starts a goroutine per packet (see the package doc for the two
// per-direction mutexes). Drops are counted, never logged.

// handle processes one received datagram of slot s.
func (w *worker) handle(s *slot, m *batchconn.Message) {
	if m.N <= 0 { // empty, or truncated because larger than a buffer
		w.ctr.drop[pb.DropMalformed].Add(1)
		return
	}
	switch s.kind {
	case sockWebRTC:
		w.fromWebRTC(s, m)
	case sockPlain:
		w.fromPlain(s.stream, s.rtcp, false, m)
	case sockPlainShared:
		st := w.shared[latchKey{s.group.id, m.Addr}]
		if st == nil {
			w.ctr.drop[pb.DropUnknownSource].Add(1)
			return
		}
		w.fromPlain(st, s.rtcp, true, m)
	}
}

// fromWebRTC demultiplexes a datagram on a shared WebRTC port (RFC 7983).
func (w *worker) fromWebRTC(s *slot, m *batchconn.Message) {
	pkt := m.Buf[:m.N]
	class := demux.Classify(pkt)
	if class == demux.STUN {
		w.answerSTUN(s, m)
		return
	}
	// Everything else is only accepted from an address that proved itself
	// with a valid ICE check: the node is never an open relay.
	l := w.latches[latchKey{s.group.id, m.Addr}]
	if l == nil {
		w.ctr.drop[pb.DropUnknownSource].Add(1)
		return
	}
	switch class {
	case demux.DTLS:
		l.ctr.dtlsIn.Add(1)
		l.deliverDTLS(pkt)
	case demux.RTP:
		w.media(l, nil, m, false)
	case demux.RTCP:
		w.media(l, nil, m, true)
	default:
		l.ctr.drop[pb.DropMalformed].Add(1)
	}
}

// answerSTUN answers an ICE connectivity check as an ICE-lite agent
// (RFC 8445 section 7.3): only checks whose USERNAME names a leg on this
// port and whose MESSAGE-INTEGRITY verifies with that leg's password get an
// answer; the answer goes back to the source with XOR-MAPPED-ADDRESS.
func (w *worker) answerSTUN(s *slot, m *batchconn.Message) {
	pkt := m.Buf[:m.N]
	r := &w.stunReq
	if err := icelite.ParseRequest(pkt, r); err != nil {
		w.ctr.drop[pb.DropMalformed].Add(1)
		return
	}
	l := w.ufrags[string(r.LocalUfrag)] // no allocation: map lookup by converted bytes
	if l == nil || l.group != s.group {
		w.ctr.drop[pb.DropUnknownSource].Add(1)
		return
	}
	creds := l.ice.Load().match(r.LocalUfrag)
	if creds == nil || !w.stun.Verify(pkt, r, creds.key) ||
		(creds.remoteUfrag != "" && string(r.RemoteUfrag) != creds.remoteUfrag) {
		l.ctr.drop[pb.DropStunAuth].Add(1)
		return
	}
	if cap(m.Buf)-m.N < icelite.MaxResponseSize {
		l.ctr.drop[pb.DropMalformed].Add(1)
		return
	}
	// The answer is written into the same buffer, after the request.
	resp, err := w.stun.AppendSuccess(m.Buf[m.N:m.N], r, m.Addr, creds.key)
	if err != nil {
		l.ctr.drop[pb.DropMalformed].Add(1)
		return
	}
	l.ctr.stunIn.Add(1)
	w.send(s.sock, resp, m.Addr, l)
	k := latchKey{s.group.id, m.Addr}
	if w.latches[k] != l {
		w.latch(k, l) // first valid check from this address: rare, may allocate
	}
	l.validCheck(creds, m.Addr, r.UseCandidate, w.now)
}

// send queues b for addr on sock, charged to leg l if the kernel refuses
// it. The Loop holds as many datagrams as a round returns, and each
// received datagram yields at most one to send, so it is not full here; if
// that ever stops being true the Loop flushes what it holds first, and only
// a Loop that cannot send at all makes this a counted drop.
func (w *worker) send(sock *batchconn.Socket, b []byte, addr netip.AddrPort, l *Leg) {
	if !w.io.Send(sock, b, addr, l) {
		w.sendFailed(l, nil)
	}
}

// media relays one RTP or RTCP datagram from leg src (stream st, nil when
// the transport is shared by the leg's streams) to its peer leg.
func (w *worker) media(src *Leg, st *Stream, m *batchconn.Message, isRTCP bool) {
	n, ok := w.unprotect(src, st, m.Buf, m.N, isRTCP)
	if !ok {
		return
	}
	w.relay(src, st, m.Buf, n, isRTCP)
}

// relay relays one decrypted RTP or RTCP datagram (buf[:n]) from leg src
// (stream st, nil when the transport is shared by the leg's streams) to
// its peer leg.
func (w *worker) relay(src *Leg, st *Stream, buf []byte, n int, isRTCP bool) {
	sess := src.sess
	cfg := sess.cfg.Load()
	lc := &cfg.legs[src.index]
	dst := sess.peer(src)
	dlc := &cfg.legs[dst.index]

	var ok bool
	src.ctr.bytesIn.Add(uint64(n))
	src.ctr.lastIn.Store(w.now)

	if isRTCP {
		src.ctr.rtcpIn.Add(1)
		if st == nil {
			st = rtcpStream(lc, buf[:n])
		}
		if st == nil || st.index >= len(dlc.streams) {
			src.ctr.drop[pb.DropDirection].Add(1)
			return
		}
		dsc := &dlc.streams[st.index]
		addr, sock := w.destination(dst, dsc, true)
		if sock == nil {
			return
		}
		var received rewrite.StreamTable
		receivedMappings(src, lc, &received)
		w.rtcpQuality(lc, dlc, dsc, &received, buf[:n])
		if n, ok = w.protectRTCP(src, dst, dlc, dsc, &received, buf, n); !ok {
			return
		}
		dst.ctr.rtcpOut.Add(1)
		dst.ctr.bytesOut.Add(uint64(n))
		w.send(sock, buf[:n], addr, dst)
		return
	}

	src.ctr.packetsIn.Add(1)
	if !src.started.Load() {
		src.mediaStarted()
	}
	if src.timedOut.Load() {
		src.timedOut.Store(false)
	}
	pt := buf[1] & 0x7f
	if st == nil {
		idx := lc.ptStream[pt]
		if idx < 0 || int(idx) >= len(lc.streams) {
			src.ctr.drop[pb.DropUnknownPt].Add(1)
			return
		}
		st = lc.streams[idx].s
	} else if st.index >= len(lc.streams) {
		src.ctr.drop[pb.DropDirection].Add(1)
		return
	}
	if ssrc := binary.BigEndian.Uint32(buf[8:12]); st.inSSRC.Load() != ssrc {
		st.inSSRC.Store(ssrc)
	}
	sc := &lc.streams[st.index]
	if !sc.recv {
		src.ctr.drop[pb.DropDirection].Add(1)
		return
	}
	outPT, known := sc.toPeer.Lookup(pt)
	if !known {
		src.ctr.drop[pb.DropUnknownPt].Add(1)
		return
	}
	st.q.receive(buf[:n], pt, sc.clock(pt), w.now)
	if st.index >= len(dlc.streams) || !dlc.streams[st.index].send {
		src.ctr.drop[pb.DropDirection].Add(1)
		return
	}
	dsc := &dlc.streams[st.index]
	addr, sock := w.destination(dst, dsc, false)
	if sock == nil {
		return
	}
	if n, ok = w.protectRTP(dst, dsc, buf, n, outPT); !ok {
		return
	}
	dst.ctr.packetsOut.Add(1)
	dst.ctr.bytesOut.Add(uint64(n))
	w.send(sock, buf[:n], addr, dst)
}

// latched returns the source latched for component i (0 RTP, 1 RTCP) in
// the negotiation sc, or nil.
func (st *Stream) latched(i int, sc *streamConfig) *source {
	if a := st.latch[i].Load(); a != nil && a.epoch == sc.epoch {
		return a
	}
	return nil
}

// rtcpStream picks the stream an RTCP packet from a WebRTC leg belongs to:
// the one whose media SSRC sent it, else the first.
func rtcpStream(lc *legConfig, pkt []byte) *Stream {
	if len(lc.streams) == 0 {
		return nil
	}
	if len(lc.streams) > 1 && len(pkt) >= 8 {
		sender := binary.BigEndian.Uint32(pkt[4:8])
		for i := range lc.streams {
			if lc.streams[i].s.inSSRC.Load() == sender {
				return lc.streams[i].s
			}
		}
	}
	return lc.streams[0].s
}

// destination returns where media for dst's stream dsc goes and the socket
// to send it from, or a nil socket (counted) when there is nowhere to send.
func (w *worker) destination(dst *Leg, dsc *streamConfig, rtcp bool) (netip.AddrPort, *batchconn.Socket) {
	if dst.kind == pb.LegKind_LEG_KIND_WEBRTC {
		p := dst.path.Load()
		// Never send where no valid check came from, nor after consent
		// expired (RFC 7675 section 5.1).
		if p == nil || w.now-p.consent.Load() > int64(ConsentTimeout) {
			dst.ctr.drop[pb.DropNoConsent].Add(1)
			return netip.AddrPort{}, nil
		}
		return p.addr, w.groupSocks[dst.group.id]
	}
	st := dsc.s
	i := 0
	if rtcp && !dsc.mux {
		i = 1
	}
	var addr netip.AddrPort
	switch a := st.latched(i, dsc); {
	case a != nil:
		addr = a.addr
	case i == 1:
		addr = dsc.remoteRTCP
	default:
		addr = dsc.remote
	}
	if !addr.IsValid() {
		dst.ctr.drop[pb.DropDirection].Add(1) // no address known yet
		return addr, nil
	}
	if st.shared != nil {
		g := st.shared.rtp
		if i == 1 {
			g = st.shared.rtcp
		}
		return addr, w.groupSocks[g.id]
	}
	if i == 1 {
		return addr, st.rtcp
	}
	return addr, st.rtp
}

// unprotect decrypts SRTP/SRTCP in place (WebRTC legs, SDES streams) and
// returns the plaintext length. Plain RTP passes through untouched.
func (w *worker) unprotect(l *Leg, st *Stream, buf []byte, n int, isRTCP bool) (int, bool) {
	webrtc := l.kind == pb.LegKind_LEG_KIND_WEBRTC
	if !webrtc && !st.sdes.Load() {
		return n, true
	}
	var out []byte
	var err error
	l.inMu.Lock()
	ctx := l.dec
	if !webrtc {
		ctx = st.dec
	}
	if ctx == nil {
		l.inMu.Unlock()
		l.ctr.drop[pb.DropNotReady].Add(1)
		return 0, false
	}
	switch {
	case isRTCP:
		out, err = ctx.DecryptRTCP(buf[:n], buf[:n], &w.rtcpHdr)
	case webrtc && !l.decProven:
		out, err = w.decryptFirstRTP(l, ctx, buf, n) // rare: a leg's first packets
	default:
		out, err = ctx.DecryptRTP(buf[:n], buf[:n], &w.rtpHdr)
	}
	l.inMu.Unlock()
	if err != nil {
		switch {
		case errors.Is(err, srtp.ErrFailedToVerifyAuthTag):
			l.ctr.drop[pb.DropSrtpAuth].Add(1)
		case errors.Is(err, errSRTPReplay):
			l.ctr.drop[pb.DropReplay].Add(1)
		default:
			l.ctr.drop[pb.DropMalformed].Add(1)
		}
		return 0, false
	}
	return len(out), true
}

// protectRTP writes the outbound payload type, normalises sequence and SSRC
// where the destination needs it, and encrypts in place into the buffer's
// tailroom. It returns the length to send.
func (w *worker) protectRTP(dst *Leg, dsc *streamConfig, buf []byte, n int, pt uint8) (int, bool) {
	st := dsc.s
	if dst.kind == pb.LegKind_LEG_KIND_PLAIN && !st.sdes.Load() && !dsc.rewriteSSRC {
		// Plain RTP toward a PBX: only the payload type changes; PBXs cope
		// with the far side's sequence jumps themselves.
		buf[1] = buf[1]&0x80 | pt
		return n, true
	}
	ctx, ok := lockOut(dst, st)
	if !ok {
		return 0, false
	}
	defer dst.outMu.Unlock()
	if err := st.normalise(buf[:n], pt, dsc, w.now); err != nil {
		if errors.Is(err, rewrite.ErrDuplicate) || errors.Is(err, rewrite.ErrStale) || errors.Is(err, rewrite.ErrJump) {
			dst.ctr.drop[pb.DropSequence].Add(1) // a repeat, a straggler, or a jump on probation
		} else {
			dst.ctr.drop[pb.DropMalformed].Add(1)
		}
		return 0, false
	}
	if ctx == nil {
		return n, true
	}
	out, err := ctx.EncryptRTP(buf[:0], buf[:n], &w.rtpHdr)
	if err != nil || !inPlace(out, buf) {
		dst.ctr.drop[pb.DropMalformed].Add(1)
		return 0, false
	}
	return len(out), true
}

// inPlace reports whether out, what an SRTP context wrote for buf, is in
// buf itself. A context without room in buf's tailroom writes to a new
// buffer instead, and buf, which the caller sends, still holds the
// plaintext: that must be dropped, never sent.
func inPlace(out, buf []byte) bool { return len(out) > 0 && &out[0] == &buf[0] }

// protectRTCP translates the SSRCs an RTCP packet names for the
// destination and encrypts it in place when the destination is SRTP.
func (w *worker) protectRTCP(src, dst *Leg, dlc *legConfig, dsc *streamConfig, received *rewrite.StreamTable, buf []byte, n int) (int, bool) {
	ctx, ok := lockOut(dst, dsc.s)
	if !ok {
		return 0, false
	}
	defer dst.outMu.Unlock()
	var sent rewrite.StreamTable
	mappings(dlc, &sent)
	if err := rewrite.TranslateRTCP(buf[:n], &sent, received); err != nil {
		src.ctr.drop[pb.DropMalformed].Add(1)
		return 0, false
	}
	if ctx == nil {
		return n, true
	}
	out, err := ctx.EncryptRTCP(buf[:0], buf[:n], &w.rtcpHdr)
	if err != nil || !inPlace(out, buf) {
		dst.ctr.drop[pb.DropMalformed].Add(1)
		return 0, false
	}
	return len(out), true
}

// lockOut takes dst's outbound lock and returns the context that encrypts
// what is sent on stream st: the leg's DTLS-SRTP context, the stream's SDES
// one, or nil for plain RTP. When an SRTP destination has no keys yet it
// counts the drop, releases the lock and reports false.
func lockOut(dst *Leg, st *Stream) (*srtp.Context, bool) {
	dst.outMu.Lock()
	switch {
	case dst.kind == pb.LegKind_LEG_KIND_WEBRTC && dst.enc != nil:
		return dst.enc, true
	case dst.kind == pb.LegKind_LEG_KIND_PLAIN && !st.sdes.Load():
		return nil, true
	case dst.kind == pb.LegKind_LEG_KIND_PLAIN && st.enc != nil:
		return st.enc, true
	}
	dst.outMu.Unlock()
	dst.ctr.drop[pb.DropNotReady].Add(1)
	return nil, false
}

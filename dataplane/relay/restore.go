package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/dtlsleg"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// Carrying sessions over a restart of the process that runs the engine
// (the all-in-one strait, whose dataplane is in-process).
//
// A browser's call survives only if, after the restart, the node answers
// the browser's consent checks with the same ICE password, accepts and
// sends SRTP under the same keys, and listens on the same ports: the
// browser does nothing to set the call up again (no new ICE, no new DTLS
// handshake). Session.Save describes exactly that, and
// Engine.RestoreSession builds a session from it:
//
//   - the negotiated specs, with the node's own ICE credentials and SDES
//     keys filled in, so that re-creating the session issues the same;
//   - each WebRTC leg's shared port and nominated path (the peer proved
//     that address with a valid ICE check before; consent starts afresh at
//     the restore and lapses after ConsentTimeout without a new check, RFC
//     7675), and the SRTP master keys and salts the DTLS handshake exported
//     (RFC 5764 section 4.2) with their profile: the DTLS association
//     itself is not kept, as WebRTC sends nothing more on it;
//   - each plain stream's port pair and learnt sources;
//   - each stream's SSRC, and its outbound numbering (rewrite.Resumption),
//     so that the receiver sees the same stream continue;
//   - the SRTP rollover counter of every SSRC the leg's contexts know (the
//     48-bit packet index is ROC<<16 | sequence: a context that restarted
//     at ROC 0 on a call older than 65 536 packets would make every packet
//     fail authentication at the other end, RFC 3711 section 3.3.1) and,
//     for what the node sends, a floor above every SRTP index and SRTCP
//     index it used (see "No index twice" below).
//
// No index twice. The keys outlive the restart, so every SRTP and SRTCP
// packet index the node encrypted with before must stay used: under
// AES-CM a second packet at an index reuses its keystream (the XOR of the
// two plaintexts leaks), under AES-GCM its nonce, which gives away the
// authentication key and lets anyone forge packets (RFC 3711 section 9.2,
// RFC 7714 sections 8.1 and 16). Yet a saved record lags the packets: it
// changes once per step of the counters (srtpIndexStep, srtcpStep,
// rewrite.ResumeStep) and is written by a keeper a moment later, in
// batches. So Save records, for each SSRC the node sends, the next SRTP
// index and SRTCP index two steps above the highest used, and the
// restored contexts never go below them (srtp.Context.SetSRTPIndexFloor
// refuses a lower index; SetIndex numbers SRTCP from there), and each
// outbound stream resumes its sequence numbers at that floor: the
// receiver sees a forward jump (at most three steps, well within the
// 2^15 its rollover estimate follows). That holds as long as fewer than
// a step of packets (4 096: 82 s of 50 packets/s, 4 s at 1 000) went out
// between the record's step and its write reaching the store. A record
// read before an SSRC's first SRTCP report (its stamp moves once per
// srtcpStep reports) numbers SRTCP on from srtcpStep. One read before a
// stream's first packet gives no SRTP floor for it: the stream restarts
// on its far end's numbers (OutStream keeps the first packet's), which a
// far end that never goes back keeps above what was sent in the second
// or so before the next record; only one whose numbers went back within
// that second could repeat an index.
//
// What is not kept: the replay windows (the first packet after the restore
// sets them again: a packet replayed in that instant is relayed once), the
// learnt sources' retired addresses, the counters (they count from the
// restore) and credentials from before an ICE restart still in progress.
//
// The saved form holds keys: whoever stores it must keep it from anyone
// who may not listen to the calls (package state: a 0600 file, or Redis,
// the operator's trust domain), and never log it.

// savedVersion is the SavedSession format; another is not restored.
const savedVersion = 1

// SavedSession is what RestoreSession needs to re-create a session. It is
// plain data (JSON) and holds secrets: see the comment above.
type SavedSession struct {
	V        int               `json:"v"`
	ID       string            `json:"id"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  int64             `json:"created"` // unix nanoseconds
	TimeoutS uint32            `json:"timeout_s"`
	Legs     []SavedLeg        `json:"legs"`
}

// SavedLeg is one leg of a SavedSession.
type SavedLeg struct {
	// Spec is the leg's pb.LegSpec (binary protobuf) as last applied, with
	// the node's ICE credentials and SDES keys in it.
	Spec []byte `json:"spec"`
	// WebRTC: the shared port, the nominated peer, the DTLS-SRTP keys.
	Port    uint16 `json:"port,omitempty"`
	Path    string `json:"path,omitempty"`
	Profile uint16 `json:"profile,omitempty"`
	// LocalKey and RemoteKey are master key || master salt.
	LocalKey  []byte `json:"local_key,omitempty"`
	RemoteKey []byte `json:"remote_key,omitempty"`
	// SSRCs is the rollover state of the leg's DTLS-SRTP contexts.
	SSRCs   []SavedSSRC   `json:"ssrcs,omitempty"`
	Started bool          `json:"started,omitempty"` // MEDIA_STARTED was raised
	Streams []SavedStream `json:"streams"`
}

// SavedStream is one stream of a SavedLeg.
type SavedStream struct {
	LocalSSRC uint32 `json:"local_ssrc"`
	// Port is the RTP port of the stream's own pair (0: shared or WebRTC).
	Port uint16 `json:"port,omitempty"`
	// Latch are the sources learnt for RTP and RTCP ("" for none).
	Latch [2]string           `json:"latch,omitzero"`
	Out   *rewrite.Resumption `json:"out,omitempty"`
	// SSRCs is the rollover state of the stream's SDES contexts.
	SSRCs []SavedSSRC `json:"ssrcs,omitempty"`
}

// SavedSSRC is an SSRC's state in a pair of SRTP contexts: the rollover
// counter of each direction, and floors above the SRTP and SRTCP indexes
// sent (see "No index twice" above).
type SavedSSRC struct {
	SSRC   uint32 `json:"ssrc"`
	DecROC uint32 `json:"dec_roc,omitempty"`
	HasDec bool   `json:"has_dec,omitempty"`
	EncROC uint32 `json:"enc_roc,omitempty"`
	HasEnc bool   `json:"has_enc,omitempty"`
	// DecIndex is the decrypting context's highest SRTP index (ROC<<16 |
	// SEQ), rounded down to decIndexStep: restored as the position the
	// next packets' ROC is estimated from (RFC 3711 section 3.3.1), so
	// that a sender that crossed a wrap after the record was written is
	// followed (DecROC alone would fail its every packet). 0 in a record
	// of an earlier version, or below the first step: DecROC then.
	DecIndex uint64 `json:"dec_index,omitempty"`
	// EncNext is the lowest SRTP index (ROC<<16 | SEQ) the encrypting
	// context may use after a restore (srtpNext). 0 in a record of an
	// earlier version, which restores EncROC alone.
	EncNext uint64 `json:"enc_next,omitempty"`
	// SRTCPTop is the SRTCP index the encrypting context numbers on from
	// (the first packet after the restore takes SRTCPTop+1).
	SRTCPTop uint32 `json:"srtcp_top,omitempty"`
}

// srtpKeys are the keys a leg's DTLS handshake exported, kept so that the
// leg can be saved (immutable once stored).
type srtpKeys struct {
	profile           srtp.ProtectionProfile
	local, remote     []byte // key || salt
	localLen, saltLen int
}

// Save describes the session for RestoreSession; nil once it is deleted.
// It takes the session's lock and each leg's direction locks briefly.
func (s *Session) Save() *SavedSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	cfg := s.cfg.Load()
	sv := &SavedSession{V: savedVersion, ID: s.ID, Labels: s.Labels, Created: s.Created.UnixNano(),
		TimeoutS: uint32(s.MediaTimeout() / time.Second)}
	for i, l := range s.legs {
		spec := proto.Clone(s.specs[i]).(*pb.LegSpec)
		var sl SavedLeg
		sl.Started = l.started.Load()
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			if c := l.ice.Load(); c != nil && spec.Webrtc != nil {
				spec.Webrtc.LocalUfrag, spec.Webrtc.LocalPwd = c.localUfrag, c.localPwd
			}
			sl.Port = l.group.port
			if p := l.path.Load(); p != nil {
				sl.Path = p.addr.String()
			}
			if k := l.keys.Load(); k != nil {
				sl.Profile, sl.LocalKey, sl.RemoteKey = uint16(k.profile), k.local, k.remote
				sl.SSRCs = l.ssrcStates(nil)
			}
		}
		for j, st := range l.streams {
			ss := SavedStream{LocalSSRC: st.localSSRC, Port: st.rtpPort}
			if j < len(cfg.legs[i].streams) {
				sc := &cfg.legs[i].streams[j]
				for k := range ss.Latch {
					if a := st.latched(k, sc); a != nil {
						ss.Latch[k] = a.addr.String()
					}
				}
			}
			l.outMu.Lock()
			if r, ok := st.out.Save(); ok {
				ss.Out = &r
			}
			l.outMu.Unlock()
			if k := st.keys; k != nil && j < len(spec.GetStreams()) && spec.Streams[j].GetPlain().GetSdes() != nil {
				spec.Streams[j].Plain.Sdes.LocalKey = bytes.Clone(k.local)
				ss.SSRCs = l.ssrcStates(st)
			}
			sl.Streams = append(sl.Streams, ss)
		}
		b, err := proto.Marshal(spec)
		if err != nil {
			return nil // cannot happen: it was unmarshalled or built as a message
		}
		sl.Spec = b
		sv.Legs = append(sv.Legs, sl)
	}
	return sv
}

// Keyed is how many of the session's WebRTC legs hold the SRTP keys of
// their DTLS handshake: a keeper writes a session whose count went up at
// once, without waiting for its setup to settle, since a record without
// them cannot carry the call over a restart (the browser does no new
// handshake). Lock-free, allocation-free.
func (s *Session) Keyed() int {
	n := 0
	for _, l := range s.legs {
		if l.keys.Load() != nil {
			n++
		}
	}
	return n
}

// restoring is what RestoreSession adds to a creation: the saved session,
// and its legs' decoded specs.
type restoring struct {
	sv    *SavedSession
	specs []*pb.LegSpec
}

// streamFor is the saved state of stream j of leg i, if any.
func (r *restoring) streamFor(i, j int) *SavedStream {
	if r == nil || i >= len(r.sv.Legs) || j >= len(r.sv.Legs[i].Streams) {
		return nil
	}
	return &r.sv.Legs[i].Streams[j]
}

// RestoreSession re-creates a session from what Session.Save described
// (after a restart of the process): the same id, labels, ports, ICE
// credentials, SSRCs, SRTP keys and rollover state, nominated paths and
// learnt sources, so that its peers' media and consent checks carry on.
// Errors carry gRPC codes; a refused restore leaves nothing behind (a port
// another process took since makes it fail: the peers could not reach it).
func (e *Engine) RestoreSession(sv *SavedSession) (*Session, error) {
	if sv == nil || sv.V != savedVersion {
		return nil, statusf(codes.InvalidArgument, "saved session of another version")
	}
	r := &restoring{sv: sv}
	for i, sl := range sv.Legs {
		spec := &pb.LegSpec{}
		if err := proto.Unmarshal(sl.Spec, spec); err != nil {
			return nil, statusf(codes.InvalidArgument, "saved leg %d: %v", i, err)
		}
		r.specs = append(r.specs, spec)
	}
	req := &pb.CreateSessionRequest{Id: sv.ID, Legs: r.specs, MediaTimeoutS: sv.TimeoutS, Labels: sv.Labels}
	return e.createSession(req, r)
}

// prepareRestore gives a session being restored (built, not yet
// committed, not reachable by any worker) its saved transport state:
// keys, paths, outbound numbering, learnt sources. c is its creation.
func (e *Engine) prepareRestore(s *Session, c *change, r *restoring) error {
	now := e.cfg.Now()
	s.Created = time.Unix(0, r.sv.Created)
	for i, l := range s.legs {
		sl := &r.sv.Legs[i]
		l.started.Store(sl.Started)
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC && len(sl.LocalKey) > 0 {
			k, err := keysOf(srtp.ProtectionProfile(sl.Profile), sl.LocalKey, sl.RemoteKey)
			if err != nil {
				return statusf(codes.InvalidArgument, "saved leg %d keys: %v", i, err)
			}
			dec, enc, err := newContexts(k.profile, k.local[:k.localLen], k.local[k.localLen:], k.remote[:k.localLen], k.remote[k.localLen:])
			if err != nil {
				return statusf(codes.InvalidArgument, "saved leg %d keys: %v", i, err)
			}
			applySSRCs(dec, enc, sl.SSRCs, restoredSenders(c.legs[i].streams, sl.Streams))
			l.setKeys(nil, dec, enc)
			l.keys.Store(k)
			name := dtlsleg.ProfileName(k.profile)
			l.profile.Store(&name)
			// The association is done: no handshake when a path appears.
			l.dtls.started = true
			l.state.Store(int32(pb.LegState_LEG_STATE_CONNECTED))
		}
		if a, err := netip.ParseAddrPort(sl.Path); err == nil && l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			p := &icePath{addr: a}
			p.consent.Store(now.UnixNano())
			l.path.Store(p)
		}
		for j, st := range c.legs[i].streams {
			ss := r.streamFor(i, j)
			if ss == nil {
				continue
			}
			if ss.Out != nil {
				out := *ss.Out
				if j < len(c.cfg.legs[i].streams) {
					sc := &c.cfg.legs[i].streams[j]
					ssrcs := sl.SSRCs // the leg's DTLS-SRTP contexts, or the stream's SDES ones
					if len(ss.SSRCs) > 0 {
						ssrcs = ss.SSRCs
					}
					out.OutCeiling = resumeAbove(out, sc.rewriteSSRC, st.localSSRC, ssrcs)
				}
				st.out.Resume(out, now.UnixNano())
			}
			if j < len(c.cfg.legs[i].streams) {
				sc := &c.cfg.legs[i].streams[j]
				for k, a := range ss.Latch {
					if ap, err := netip.ParseAddrPort(a); err == nil {
						st.latch[k].Store(&source{ap, sc.epoch})
					}
				}
			}
			if sd := c.legs[i].sdes; j < len(sd) && sd[j].keys != nil {
				applySSRCs(sd[j].keys.dec, sd[j].keys.enc, ss.SSRCs, restoredSenders(c.legs[i].streams[j:j+1], sl.Streams[j:j+1]))
			}
		}
	}
	return nil
}

// latchRestored makes every worker accept a restored WebRTC leg's media
// from its nominated path at once (rather than at the peer's next consent
// check, seconds away). Called after the session's commit.
func (e *Engine) latchRestored(s *Session) {
	cmds := make([][]command, len(e.workers))
	for _, l := range s.legs {
		p := l.path.Load()
		if l.kind != pb.LegKind_LEG_KIND_WEBRTC || p == nil {
			continue
		}
		for i := range cmds {
			cmds[i] = append(cmds[i], command{op: cmdLatch, leg: l, key: latchKey{l.group.id, p.addr}})
		}
	}
	e.barrier(cmds)
}

// keysOf checks saved DTLS-SRTP keys against their profile.
func keysOf(p srtp.ProtectionProfile, local, remote []byte) (*srtpKeys, error) {
	kl, err := p.KeyLen()
	if err != nil {
		return nil, err
	}
	sl, err := p.SaltLen()
	if err != nil {
		return nil, err
	}
	if len(local) != kl+sl || len(remote) != kl+sl {
		return nil, fmt.Errorf("keys of %d and %d bytes, the profile takes %d", len(local), len(remote), kl+sl)
	}
	return &srtpKeys{profile: p, local: bytes.Clone(local), remote: bytes.Clone(remote), localLen: kl, saltLen: sl}, nil
}

// groupAt is address ai's WebRTC port port, if the engine has it.
func (e *Engine) groupAt(ai int, port uint16) *group {
	if ai < 0 || ai >= len(e.webrtc) {
		return nil
	}
	for _, g := range e.webrtc[ai] {
		if g.port == port {
			return g
		}
	}
	return nil
}

// Stamp is a digest of what Save would describe, computed without
// building it (no allocation, the same locks): a keeper that saves
// sessions periodically saves one again only when its stamp changed. It
// moves with every change, every handshake, path, learnt source and
// rebase, and with the counters Save rounds (ResumeStep, srtpIndexStep,
// srtcpStep, ROC),
// not with each packet.
func (s *Session) Stamp() uint64 {
	var h maphash.Hash
	h.SetSeed(stampSeed)
	w := func(v uint64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w(uint64(s.updated.Load()))
	cfg := s.cfg.Load()
	for i, l := range s.legs {
		if l.started.Load() {
			w(1)
		}
		if k := l.keys.Load(); k != nil {
			w(uint64(k.profile))
		}
		if p := l.path.Load(); p != nil {
			w(addrDigest(p.addr))
		}
		l.outMu.Lock()
		for j, st := range l.streams {
			if r, ok := st.out.Save(); ok {
				w(uint64(r.InSSRC)<<32 | uint64(r.SeqOffset)<<16 | uint64(r.OutCeiling))
				w(uint64(r.TSOffset))
			}
			if j < len(cfg.legs[i].streams) {
				for k := range st.latch {
					if a := st.latched(k, &cfg.legs[i].streams[j]); a != nil {
						w(addrDigest(a.addr))
					}
				}
			}
			for _, enc := range []*srtp.Context{l.enc, st.enc} {
				if enc == nil {
					continue
				}
				for _, v := range []uint32{st.localSSRC, st.inSSRC.Load(), st.out.Mapping().OutSSRC} {
					// Each moves with the ROC too, and when the first
					// packet or report makes the state.
					if idx, ok := enc.SRTPIndex(v); ok {
						w(idx/srtpIndexStep + 1)
					}
					if rtcp, ok := enc.Index(v); ok {
						w(uint64(rtcp/srtcpStep) + 1)
					}
				}
			}
		}
		l.outMu.Unlock()
		l.inMu.Lock()
		for _, st := range l.streams {
			for _, dec := range []*srtp.Context{l.dec, st.dec} {
				if dec != nil {
					idx, _ := dec.SRTPIndex(st.inSSRC.Load()) // moves with the ROC too
					w(idx / decIndexStep)
				}
			}
		}
		l.inMu.Unlock()
	}
	return h.Sum64()
}

// stampSeed makes Stamp comparable across calls within a process.
var stampSeed = maphash.MakeSeed()

func addrDigest(a netip.AddrPort) uint64 {
	b := a.Addr().As16()
	return binary.LittleEndian.Uint64(b[8:])<<16 ^ binary.LittleEndian.Uint64(b[:8]) ^ uint64(a.Port())
}

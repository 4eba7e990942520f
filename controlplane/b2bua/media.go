package b2bua

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/sdp"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// legKind is a call leg's media profile.
type legKind int

const (
	// kindWebRTC: ICE-lite, DTLS-SRTP, BUNDLE (a browser, or an API client).
	kindWebRTC legKind = iota + 1
	// kindPlain: RTP/AVP or RTP/SAVP with SDES (a PBX, trunk or SIP phone).
	kindPlain
)

func (k legKind) String() string {
	if k == kindWebRTC {
		return "webrtc"
	}
	return "plain"
}

// mediaLeg is what Strait negotiated on one leg: the peer's last
// description, Strait's origin, and per stream the codecs (as this leg
// numbers them) and Strait's direction.
type mediaLeg struct {
	kind   legKind
	policy sdp.Policy // what this leg may be offered
	sdes   bool       // plain: offer RTP/SAVP

	origin sdp.Origin
	remote *sdp.Description
	role   sdp.DTLSRole
	codecs [][]sdp.Codec
	dirs   []sdp.Direction
	// SDES per stream: the key and suite Strait sends with when it offered
	// SAVP, and the peer's key.
	sdesSuite  []string
	sdesLocal  [][]byte
	sdesRemote [][]byte
}

func (l *mediaLeg) grow(n int) {
	for len(l.codecs) < n {
		l.codecs = append(l.codecs, nil)
		l.dirs = append(l.dirs, sdp.SendRecv)
		l.sdesSuite = append(l.sdesSuite, "")
		l.sdesLocal = append(l.sdesLocal, nil)
		l.sdesRemote = append(l.sdesRemote, nil)
	}
}

// exchange is an offer/answer in progress: an offer from leg from that
// Strait passed to the other leg.
type exchange struct {
	from    int // -1: Strait offered on its own (delayed offer)
	offer   *sdp.Description
	streams []sdp.Stream // what Strait offered the other leg
	// silent: the answer is not sent to the offerer (it already answered:
	// the second half of a delayed offer).
	silent  bool
	restart bool // the offer restarts ICE on leg from

	answerIn  []byte // the answer received, and the one Strait sent for it
	answerOut []byte
}

// media is a call's one dataplane session and its negotiation. Exchanges
// are serialised by the call (one at a time); mu guards the state against
// concurrent hang-up.
type media struct {
	pool    *dpool.Pool
	callID  string
	timeout time.Duration // media timeout for the session, 0 for the node's

	mu     sync.Mutex
	legs   []*mediaLeg
	sess   *pb.Session
	pend   *exchange
	closed bool
	final  *pb.Session
}

// errClosed is returned by media operations after the call ended.
var errClosed = sipError(487, "", errors.New("call ended"))

func newMedia(pool *dpool.Pool, callID string, timeout time.Duration, legs ...*mediaLeg) *media {
	return &media{pool: pool, callID: callID, timeout: timeout, legs: legs}
}

// sessionID is the dataplane session id, empty before one exists.
func (m *media) sessionID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return ""
	}
	return m.sess.GetId()
}

func pbDir(d sdp.Direction) pb.Direction {
	switch d {
	case sdp.SendOnly:
		return pb.Direction_DIRECTION_SENDONLY
	case sdp.RecvOnly:
		return pb.Direction_DIRECTION_RECVONLY
	case sdp.Inactive:
		return pb.Direction_DIRECTION_INACTIVE
	}
	return pb.Direction_DIRECTION_SENDRECV
}

func pbRole(r sdp.DTLSRole) pb.DTLSRole {
	switch r {
	case sdp.RoleClient:
		return pb.DTLSRole_DTLS_ROLE_CLIENT
	case sdp.RoleServer:
		return pb.DTLSRole_DTLS_ROLE_SERVER
	}
	return pb.DTLSRole_DTLS_ROLE_UNKNOWN
}

func pbCodecs(cs []sdp.Codec) []*pb.Codec {
	out := make([]*pb.Codec, len(cs))
	for i, c := range cs {
		out[i] = &pb.Codec{PayloadType: uint32(c.PayloadType), Name: c.Name, ClockRate: c.ClockRate, Channels: uint32(c.Channels)}
	}
	return out
}

// spec is leg i's LegSpec from what is negotiated so far.
func (m *media) spec(i int) *pb.LegSpec {
	l := m.legs[i]
	ls := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN}
	if l.kind == kindWebRTC {
		ls.Kind = pb.LegKind_LEG_KIND_WEBRTC
		ws := &pb.WebRTCSpec{DtlsRole: pbRole(l.role)}
		if l.remote != nil {
			if r, err := l.remote.RemoteWebRTC(); err == nil {
				ws.RemoteUfrag, ws.RemotePwd = r.ICE.Ufrag, r.ICE.Pwd
				ws.RemoteFingerprint = &pb.Fingerprint{Algorithm: r.Fingerprint.Algorithm, Value: r.Fingerprint.Value}
			}
		}
		ls.Webrtc = ws
	}
	for j := range l.codecs {
		media := "audio"
		if l.remote != nil && j < len(l.remote.Media) {
			media = l.remote.Media[j].Kind.String()
		}
		ss := &pb.StreamSpec{Media: media, Direction: pbDir(l.dirs[j]), Codecs: pbCodecs(l.codecs[j]),
			RewriteSsrc: l.kind == kindWebRTC}
		if len(l.codecs[j]) == 0 {
			ss.Direction = pb.Direction_DIRECTION_INACTIVE
		}
		if l.kind == kindPlain {
			ps := &pb.PlainSpec{PortMode: pb.PortMode_PORT_MODE_PER_LEG}
			if l.remote != nil && j < len(l.remote.Media) {
				rm := &l.remote.Media[j]
				if a, ok := rm.RemoteRTP(); ok && !rm.Rejected() {
					ps.RemoteAddr = a.String()
					// Strait never takes rtcp-mux on a plain leg, so
					// RTCP goes to a=rtcp or the next port.
					if rm.RTCPPort > 0 && rm.RTCPPort < 65536 && rm.RTCPPort != rm.Port {
						ip := a.Addr()
						if rm.RTCPAddress != "" {
							if x, err := netip.ParseAddr(rm.RTCPAddress); err == nil && !x.IsUnspecified() {
								ip = x
							}
						}
						ps.RemoteRtcpAddr = netip.AddrPortFrom(ip, uint16(rm.RTCPPort)).String()
					}
				}
			}
			if l.sdesRemote[j] != nil {
				ps.Sdes = &pb.SDESCrypto{Suite: l.sdesSuite[j], RemoteKey: l.sdesRemote[j], LocalKey: l.sdesLocal[j]}
			}
			ss.Plain = ps
		}
		ls.Streams = append(ls.Streams, ss)
	}
	return ls
}

func (m *media) specs() []*pb.LegSpec {
	out := make([]*pb.LegSpec, len(m.legs))
	for i := range m.legs {
		out[i] = m.spec(i)
	}
	return out
}

// create makes the dataplane session. m.mu held.
func (m *media) create(ctx context.Context) error {
	s, err := m.pool.Create(ctx, &pb.CreateSessionRequest{Legs: m.specs(),
		MediaTimeoutS: uint32(m.timeout / time.Second), Labels: map[string]string{dpool.LabelCall: m.callID}})
	if err != nil {
		return sipError(503, "", fmt.Errorf("dataplane: %w", err))
	}
	m.sess = s
	return nil
}

// update applies the negotiated state to the session. m.mu held.
func (m *media) update(ctx context.Context, restart []bool) error {
	s, err := m.pool.Update(ctx, &pb.UpdateSessionRequest{Id: m.sess.GetId(), Legs: m.specs(), IceRestart: restart})
	if err != nil {
		return sipError(500, "", fmt.Errorf("dataplane update: %w", err))
	}
	m.sess = s
	return nil
}

// localWebRTC is Strait's side of WebRTC leg i from the session.
func (m *media) localWebRTC(i int) (sdp.LocalWebRTC, error) {
	leg := m.sess.GetLegs()[i]
	if len(leg.GetStreams()) == 0 {
		return sdp.LocalWebRTC{}, errors.New("leg has no stream")
	}
	a, err := netip.ParseAddrPort(leg.GetStreams()[0].GetLocalAddr())
	if err != nil {
		return sdp.LocalWebRTC{}, fmt.Errorf("dataplane local address: %w", err)
	}
	fp := leg.GetLocalFingerprint()
	return sdp.LocalWebRTC{Ufrag: leg.GetLocalUfrag(), Pwd: leg.GetLocalPwd(),
		Fingerprint: sdp.Fingerprint{Algorithm: fp.GetAlgorithm(), Value: fp.GetValue()},
		Addresses:   []netip.AddrPort{a}, Role: m.legs[i].role}, nil
}

// localPlain is Strait's side of plain leg i's streams; secure marks the
// streams that carry an SDES key (offer: Strait's own; answer: the node's).
func (m *media) localPlain(i int, answer bool) []sdp.LocalPlain {
	leg := m.sess.GetLegs()[i]
	l := m.legs[i]
	out := make([]sdp.LocalPlain, len(leg.GetStreams()))
	for j, st := range leg.GetStreams() {
		rtp, _ := netip.ParseAddrPort(st.GetLocalAddr())
		rtcp, _ := netip.ParseAddrPort(st.GetLocalRtcpAddr())
		out[j] = sdp.LocalPlain{RTP: rtp, RTCP: rtcp}
		switch {
		case answer && j < len(l.sdesRemote) && l.sdesRemote[j] != nil:
			out[j].Crypto = &sdp.Crypto{Suite: l.sdesSuite[j], Key: st.GetSdesLocalKey()}
		case !answer && l.sdes:
			if l.sdesLocal[j] == nil {
				k := make([]byte, 30)
				rand.Read(k)
				l.sdesLocal[j] = k
				l.sdesSuite[j] = sdp.DefaultCryptoSuite
			}
			out[j].Crypto = &sdp.Crypto{Suite: l.sdesSuite[j], Key: l.sdesLocal[j]}
		}
	}
	return out
}

// withSSRC sets each stream's SSRC to the node's sending SSRC on leg i.
func (m *media) withSSRC(i int, streams []sdp.Stream) []sdp.Stream {
	out := slices.Clone(streams)
	legs := m.sess.GetLegs()
	for j := range out {
		if j < len(legs[i].GetStreams()) {
			out[j].SSRC = legs[i].GetStreams()[j].GetLocalSsrc()
		}
	}
	return out
}

// build writes Strait's offer on leg i from streams. m.mu held; the
// session exists.
func (m *media) buildOffer(i int, streams []sdp.Stream) (*sdp.Description, error) {
	l := m.legs[i]
	if l.kind == kindWebRTC {
		local, err := m.localWebRTC(i)
		if err != nil {
			return nil, err
		}
		d, err := sdp.WebRTCOffer(&l.origin, m.withSSRC(i, streams), local)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return sdp.PlainOffer(&l.origin, streams, m.localPlain(i, false))
}

// buildAnswer writes Strait's answer on leg i to offer. m.mu held.
func (m *media) buildAnswer(i int, offer *sdp.Description, streams []sdp.Stream) ([]byte, error) {
	l := m.legs[i]
	var d *sdp.Description
	var err error
	if l.kind == kindWebRTC {
		local, lerr := m.localWebRTC(i)
		if lerr != nil {
			return nil, lerr
		}
		d, err = sdp.WebRTCAnswer(&l.origin, offer, m.withSSRC(i, streams), local)
	} else {
		d, err = sdp.PlainAnswer(&l.origin, offer, streams, m.localPlain(i, true))
	}
	if err != nil {
		return nil, err
	}
	return d.Marshal()
}

// adopt records d as leg i's remote description: DTLS role and SDES keys.
// answer says whether d answers Strait's offer.
func (m *media) adopt(i int, d *sdp.Description, answer bool) error {
	l := m.legs[i]
	l.grow(len(d.Media))
	if l.kind == kindWebRTC {
		r, err := d.RemoteWebRTC()
		if err != nil {
			return err
		}
		if answer {
			role, err := sdp.DTLSRoleFromAnswer(r.Setup)
			if err != nil {
				return err
			}
			l.role = role
		} else {
			l.role = sdp.DTLSRoleForOffer(r.Setup, l.role)
		}
	} else {
		for j := range d.Media {
			l.sdesRemote[j] = nil
			if c, ok := sdp.SelectCrypto(d.Media[j].Crypto); ok && !d.Media[j].Rejected() {
				if answer && l.sdesLocal[j] != nil && c.Suite != l.sdesSuite[j] {
					return sipError(488, "", fmt.Errorf("answer chose SDES suite %s, offered %s", c.Suite, l.sdesSuite[j]))
				}
				if !answer {
					l.sdesSuite[j], l.sdesLocal[j] = c.Suite, nil // the node makes our key
				}
				l.sdesRemote[j] = c.Key
			}
		}
	}
	l.remote = d
	return nil
}

// offer passes a peer's offer from leg from to the other leg and returns
// Strait's offer for it. The session is created by the first offer.
func (m *media) offer(ctx context.Context, from int, d *sdp.Description) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	to := 1 - from
	tl := m.legs[to]
	streams, err := sdp.OfferStreams(d, tl.policy)
	if err != nil {
		return nil, err
	}
	ex := &exchange{from: from, offer: d, streams: streams}
	if fl := m.legs[from]; m.sess != nil && fl.kind == kindWebRTC && fl.remote != nil {
		ex.restart = sdp.ICERestart(fl.remote, d)
	}
	if m.sess == nil {
		if err := m.adopt(from, d, false); err != nil {
			return nil, err
		}
		for _, l := range m.legs {
			l.grow(len(streams))
			for j, s := range streams {
				l.codecs[j] = s.Codecs
			}
		}
		if err := m.create(ctx); err != nil {
			return nil, err
		}
	} else if len(streams) > len(tl.codecs) {
		// New m-lines: the session grows its streams first.
		for _, l := range m.legs {
			l.grow(len(streams))
		}
		for j := len(tl.codecs); j < len(streams); j++ {
			for _, l := range m.legs {
				l.codecs[j] = streams[j].Codecs
			}
		}
		if err := m.update(ctx, nil); err != nil {
			return nil, err
		}
	}
	out, err := m.buildOffer(to, streams)
	if err != nil {
		return nil, err
	}
	ex.streams = streams
	if tl.kind == kindWebRTC {
		// WebRTCOffer may renumber payload types across the bundle.
		for j := range ex.streams {
			if j < len(out.Media) && !streams[j].Rejected {
				ex.streams[j].Codecs = out.Media[j].Codecs
			}
		}
	}
	m.pend = ex
	return out.Marshal()
}

// offerFresh makes an offer on leg to without one to start from (the
// INVITE on the other leg had no SDP).
func (m *media) offerFresh(ctx context.Context, to int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	var names []string
	other := m.legs[1-to].policy
	for _, n := range m.legs[to].policy.Codecs {
		if other.Allows(n) {
			names = append(names, n)
		}
	}
	streams := []sdp.Stream{sdp.Policy{Codecs: names}.NewStream(sdp.KindAudio)}
	if streams[0].Rejected {
		return nil, sipError(488, "", errors.New("the legs' codec lists have nothing in common"))
	}
	for _, l := range m.legs {
		l.grow(1)
		l.codecs[0] = streams[0].Codecs
	}
	if m.sess == nil {
		if err := m.create(ctx); err != nil {
			return nil, err
		}
	}
	out, err := m.buildOffer(to, streams)
	if err != nil {
		return nil, err
	}
	if m.legs[to].kind == kindWebRTC {
		streams[0].Codecs = out.Media[0].Codecs
	}
	m.pend = &exchange{from: -1, streams: streams}
	return out.Marshal()
}

// answer takes the answer leg at gave to the pending offer. It returns
// Strait's answer for the offering leg (nil when that leg already has
// one), or, after a delayed offer, Strait's offer for the other leg with
// needOffer set.
func (m *media) answer(ctx context.Context, at int, d *sdp.Description, raw []byte) (out []byte, needOffer bool, err error) {
	m.mu.Lock()
	ex := m.pend
	if m.closed {
		m.mu.Unlock()
		return nil, false, errClosed
	}
	if ex == nil {
		m.mu.Unlock()
		return nil, false, sipError(500, "", errors.New("answer without an offer"))
	}
	if ex.answerIn != nil && string(ex.answerIn) == string(raw) {
		m.mu.Unlock()
		return ex.answerOut, false, nil // the 200 repeats the 183's answer
	}
	if ex.from == -1 {
		// Delayed offer: this leg answered Strait's own offer; offer the
		// other leg what it chose.
		if len(d.Media) != len(ex.streams) {
			m.mu.Unlock()
			return nil, false, sipError(488, "", errors.New("answer does not match the offer's m-lines"))
		}
		if err := m.adopt(at, d, true); err != nil {
			m.mu.Unlock()
			return nil, false, err
		}
		l := m.legs[at]
		for j := range d.Media {
			_, l.codecs[j] = sdp.SharedCodecs(ex.streams[j].Codecs, d.Media[j].Codecs)
			l.dirs[j] = ex.streams[j].Direction.And(d.Media[j].Direction.Reverse())
		}
		m.pend = nil
		m.mu.Unlock()
		o, err := m.offer(ctx, at, d)
		if err != nil {
			return nil, false, err
		}
		m.mu.Lock()
		m.pend.silent = true
		m.mu.Unlock()
		return o, true, nil
	}
	defer m.mu.Unlock()
	from := ex.from
	astreams, err := sdp.AnswerStreams(ex.offer, d)
	if err != nil {
		return nil, false, err
	}
	if !ex.silent {
		if err := m.adopt(from, ex.offer, false); err != nil {
			return nil, false, err
		}
	}
	if err := m.adopt(at, d, true); err != nil {
		return nil, false, err
	}
	fl, tl := m.legs[from], m.legs[at]
	for j := range astreams {
		fl.codecs[j], tl.codecs[j] = nil, nil
		if !astreams[j].Rejected {
			fl.codecs[j], tl.codecs[j] = sdp.SharedCodecs(astreams[j].Codecs, d.Media[j].Codecs)
		}
		fl.dirs[j] = astreams[j].Direction
		tl.dirs[j] = ex.streams[j].Direction.And(d.Media[j].Direction.Reverse())
	}
	restart := make([]bool, len(m.legs))
	restart[from] = ex.restart
	if err := m.update(ctx, restart); err != nil {
		return nil, false, err
	}
	ex.answerIn = raw
	if ex.silent {
		return nil, false, nil
	}
	ans, err := m.buildAnswer(from, ex.offer, astreams)
	if err != nil {
		return nil, false, err
	}
	ex.answerOut = ans
	return ans, false, nil
}

// answerLocally answers the pending offer on behalf of leg at, which has
// no signalling to ask (an API client): as if it answered with its last
// description, keeping its transport as it is.
func (m *media) answerLocally(ctx context.Context, at int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ex := m.pend
	if ex == nil || ex.from < 0 || m.closed {
		return nil, sipError(488, "", errors.New("no offer to answer"))
	}
	tl := m.legs[at]
	astreams, err := sdp.AnswerStreams(ex.offer, tl.remote)
	if err != nil {
		return nil, err
	}
	if err := m.adopt(ex.from, ex.offer, false); err != nil {
		return nil, err
	}
	fl := m.legs[ex.from]
	for j := range astreams {
		fl.codecs[j] = nil
		if !astreams[j].Rejected {
			fl.codecs[j], tl.codecs[j] = sdp.SharedCodecs(astreams[j].Codecs, tl.remote.Media[j].Codecs)
		}
		fl.dirs[j] = astreams[j].Direction
		tl.dirs[j] = astreams[j].Direction.Reverse()
	}
	restart := make([]bool, len(m.legs))
	restart[ex.from] = ex.restart
	if err := m.update(ctx, restart); err != nil {
		return nil, err
	}
	m.pend = nil
	return m.buildAnswer(ex.from, ex.offer, astreams)
}

// abandon drops a pending exchange the other leg refused.
func (m *media) abandon() {
	m.mu.Lock()
	m.pend = nil
	m.mu.Unlock()
}

// echo answers a one-leg session's offer: the dataplane reflects the
// caller's media back to it.
func (m *media) echo(ctx context.Context, d *sdp.Description) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.legs[0]
	streams, err := sdp.OfferStreams(d, l.policy)
	if err != nil {
		return nil, err
	}
	if err := m.adopt(0, d, false); err != nil {
		return nil, err
	}
	for j := range streams {
		streams[j].Direction = streams[j].Direction.Reverse()
		l.codecs[j] = streams[j].Codecs
		l.dirs[j] = streams[j].Direction
	}
	if err := m.create(ctx); err != nil {
		return nil, err
	}
	return m.buildAnswer(0, d, streams)
}

// close deletes the session and returns its final state (nil if there was
// none). Later operations fail with errClosed.
func (m *media) close(ctx context.Context, reason string) *pb.Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.final
	}
	m.closed = true
	if m.sess == nil {
		return nil
	}
	s, err := m.pool.Delete(ctx, m.sess.GetId(), reason)
	if err != nil || s == nil {
		s = m.sess
	}
	m.final = s
	return s
}

package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
	shared bool       // plain: on the node's shared ports

	origin sdp.Origin
	remote *sdp.Description
	// mlines is the most m-lines a description exchanged on the leg had:
	// Strait's offers never have fewer (RFC 3264 section 8).
	mlines int
	role   sdp.DTLSRole
	codecs [][]sdp.Codec
	dirs   []sdp.Direction
	// SDES per stream: the key and suite Strait sends with when it offered
	// SAVP, and the peer's key.
	sdesSuite  []string
	sdesLocal  [][]byte
	sdesRemote [][]byte
	// sigIP is the IP the leg's SIP peer signals from, as Strait saw it
	// (the INVITE's or the answer's source, or where a phone registered
	// from), invalid when unknown. The node learns media from it at once
	// (a PBX behind NAT whose SDP names a private address); other sources
	// only as the SDP allows (PlainSpec.signalling_ip).
	sigIP netip.Addr
}

// signalledFrom records the SIP source address (host:port) of leg i's
// peer, unless one is known already.
func (m *media) signalledFrom(i int, source string) {
	if l := m.legs[i]; !l.sigIP.IsValid() {
		l.sigIP = sourceIP(source)
	}
}

// sourceIP is the IP of a SIP source or destination "host:port", invalid
// when it is a name or malformed.
func sourceIP(hostport string) netip.Addr {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(strings.Trim(hostport, "[]"))
	return a.Unmap()
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
	from    int              // -1: Strait offered on its own (delayed offer)
	offer   *sdp.Description // padded to the other leg's m-lines (sdp.PadOffer)
	lines   int              // the m-lines the offer had as received: the answer's count
	streams []sdp.Stream     // what Strait offered the other leg
	// silent: the answer is not sent to the offerer (it already answered:
	// the second half of a delayed offer).
	silent  bool
	restart bool // the offer restarts ICE on leg from

	answerIn  []byte // the answer received, and the one Strait sent for it
	answerOut []byte
}

// media is a call's one dataplane session and its negotiation. It
// belongs to the call's loop: only the loop calls its methods, one at a
// time, so nothing in it is locked, and its dataplane requests (gRPC for
// a remote node) hold no lock. The first three fields are frozen.
type media struct {
	pool    *dpool.Pool
	callID  string
	timeout time.Duration // media timeout for the session, 0 for the node's

	legs   []*mediaLeg
	sess   *pb.Session
	pend   *exchange
	closed bool
	final  *pb.Session
	fresh  bool // final came from the node's delete (not the last known state)
}

// errClosed is returned by media operations after the call ended.
var errClosed = sipError(487, "", errors.New("call ended"))

func newMedia(pool *dpool.Pool, callID string, timeout time.Duration, legs ...*mediaLeg) *media {
	return &media{pool: pool, callID: callID, timeout: timeout, legs: legs}
}

// sessionID is the dataplane session id, empty before one exists.
func (m *media) sessionID() string {
	if m.sess == nil {
		return ""
	}
	return m.sess.GetId()
}

// create makes the dataplane session.
func (m *media) create(ctx context.Context) error {
	s, err := m.pool.Create(ctx, &pb.CreateSessionRequest{Legs: m.specs(),
		MediaTimeoutS: uint32(m.timeout / time.Second), Labels: map[string]string{dpool.LabelCall: m.callID}})
	if err != nil {
		return sipError(503, "", fmt.Errorf("dataplane: %w", err))
	}
	m.sess = s
	return nil
}

// update applies the negotiated state to the session.
func (m *media) update(ctx context.Context, restart []bool) error {
	s, err := m.pool.Update(ctx, &pb.UpdateSessionRequest{Id: m.sess.GetId(), Legs: m.specs(), IceRestart: restart})
	if err != nil {
		return sipError(500, "", fmt.Errorf("dataplane update: %w", err))
	}
	m.sess = s
	return nil
}

// close deletes the session and returns its final state (nil if there was
// none); fresh is false when the node did not answer the delete and final
// is only the last state Strait knew. Later operations fail with
// errClosed.
func (m *media) close(ctx context.Context, reason string) (final *pb.Session, fresh bool) {
	if m.closed {
		return m.final, m.fresh
	}
	m.closed = true
	if m.sess == nil {
		return nil, false
	}
	s, err := m.pool.Delete(ctx, m.sess.GetId(), reason)
	m.fresh = err == nil && s != nil
	if !m.fresh {
		s = m.sess
	}
	m.final = s
	return s, m.fresh
}

// webrtcVideo are the video codecs browsers share (RFC 7742 makes VP8 and
// H.264 mandatory), with their retransmission format: a browser leg takes
// video whenever the other leg does too (another browser, or a trunk
// whose --codecs lists one of them).
var webrtcVideo = []string{"VP8", "H264", "VP9", "AV1", "rtx"}

// policy is what a leg of kind k may be offered.
func (c *Call) policy(k legKind) sdp.Policy {
	if k == kindWebRTC {
		p := sdp.WebRTCPolicy()
		p.Codecs = append(p.Codecs, webrtcVideo...)
		return p
	}
	return c.e.cfg.TrunkPolicy
}

func (c *Call) mediaLeg(l *leg) *mediaLeg {
	ml := &mediaLeg{kind: l.kind, policy: c.policy(l.kind), sdes: l.kind == kindPlain && c.e.cfg.SDES,
		shared: l.kind == kindPlain && c.e.cfg.SharedPlainPorts}
	switch {
	case l.d == nil:
	case l.d.invite != nil: // Strait answers: the INVITE's source
		ml.sigIP = sourceIP(l.d.invite.Source())
	default: // Strait calls: where it sends (an IP, or a name resolved later from the answer)
		l.d.mu.Lock()
		dest := l.d.route().Dest // route reads the dialog's guarded fields
		l.d.mu.Unlock()
		ml.sigIP = sourceIP(dest)
	}
	return ml
}

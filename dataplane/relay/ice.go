package relay

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"

	"google.golang.org/grpc/codes"

	"github.com/strait-sbc/strait/dataplane/icelite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// match returns the credentials whose local ufrag is ufrag: the current
// ones, or those from before an ICE restart.
func (c *iceCreds) match(ufrag []byte) *iceCreds {
	for ; c != nil; c = c.prev {
		if string(ufrag) == c.localUfrag {
			return c
		}
	}
	return nil
}

// validCheck records a verified ICE check from addr. The first one gives the
// leg its path; later ones refresh consent on it (RFC 7675), and a
// nominated check from another address moves the path there (RFC 8445
// section 8.1.1: the controlling agent nominates the pair to use).
func (l *Leg) validCheck(creds *iceCreds, addr netip.AddrPort, nominated bool, now int64) {
	if cur := l.ice.Load(); creds == cur && cur.prev != nil {
		// The peer uses the credentials of the ICE restart: forget the old
		// ones (the replacement is a new immutable value: rare).
		next := *cur
		next.prev = nil
		l.ice.CompareAndSwap(cur, &next)
	}
	p := l.path.Load()
	if p != nil && p.addr == addr {
		p.consent.Store(now)
		if p.expired.Load() {
			p.expired.Store(false)
		}
		return
	}
	if p != nil && !nominated {
		return // answered and latched, but media stays on the nominated path
	}
	np := &icePath{addr: addr}
	np.consent.Store(now)
	if !l.path.CompareAndSwap(p, np) {
		return // another worker moved the path at the same moment
	}
	e := l.sess.engine
	if p == nil {
		l.state.CompareAndSwap(int32(pb.LegState_LEG_STATE_NEW), int32(pb.LegState_LEG_STATE_CONNECTING))
		e.event(l, pb.EventType_EVENT_TYPE_ICE_CONNECTED, addr.String())
		e.startDTLS(l)
		return
	}
	if t := l.dtls.transport.Load(); t != nil {
		t.SetRemote(addr)
	}
}

// newCreds makes a leg's ICE credentials from the spec, generating what it
// leaves empty (RFC 8445 section 5.3: ufrag at least 24 bits, password at
// least 128 bits of randomness). prev, when given, is an immutable copy of
// the credentials an ICE restart replaces: new ones never repeat them.
func newCreds(spec *pb.WebRTCSpec, prev *iceCreds) (*iceCreds, error) {
	c := &iceCreds{
		localUfrag:  spec.GetLocalUfrag(),
		localPwd:    spec.GetLocalPwd(),
		remoteUfrag: spec.GetRemoteUfrag(),
		prev:        prev,
	}
	if c.localUfrag == "" || (prev != nil && c.localUfrag == prev.localUfrag) {
		c.localUfrag = randomString(iceAlphabet, 8)
	}
	if c.localPwd == "" || (prev != nil && c.localPwd == prev.localPwd) {
		c.localPwd = randomString(iceAlphabet, 24)
	}
	key, err := icelite.NewKey([]byte(c.localPwd))
	if err != nil {
		return nil, statusf(codes.InvalidArgument, "local ICE password: %v", err)
	}
	c.key = key
	return c, nil
}

// nextCreds works out a WebRTC leg's credentials after an update with spec
// (restart: the update asks for an ICE restart). It returns nil when they
// stay as they are, and whether they come from a restart. It changes
// nothing: the caller publishes the result. Called with sess.mu held.
//
// An ICE restart (RFC 8445 section 9) issues new local credentials and
// keeps the current ones valid until the peer uses the new. It is applied
// once per remote ufrag: a peer that restarts ICE offers a new ufrag
// (RFC 8839 section 4.4.1.1.1), so a request to restart for the remote
// ufrag the last restart was for is a retry of that request, and changes
// nothing (UpdateSession is idempotent). New local credentials in the spec
// are a restart whatever the flag says.
func nextCreds(l *Leg, spec *pb.WebRTCSpec, restart bool) (next *iceCreds, restarted bool, err error) {
	cur := l.ice.Load()
	if cur == nil { // creation
		c, err := newCreds(spec, nil)
		return c, false, err
	}
	given := spec.GetLocalUfrag() != "" && spec.GetLocalUfrag() != cur.localUfrag
	if restart && !given && l.restartedFor != nil && *l.restartedFor == spec.GetRemoteUfrag() {
		restart = false // a retry of the restart already applied
	}
	if !restart && !given {
		if cur.remoteUfrag == spec.GetRemoteUfrag() {
			return nil, false, nil
		}
		c := *cur // a new value: workers read cur without a lock
		c.remoteUfrag = spec.GetRemoteUfrag()
		return &c, false, nil
	}
	prev := *cur // the credentials in use stay valid, without their own past
	prev.prev = nil
	c, err := newCreds(spec, &prev)
	return c, true, err
}

const (
	iceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	idAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomSSRC() uint32 {
	var b [4]byte
	rand.Read(b[:])
	if v := binary.BigEndian.Uint32(b[:]); v != 0 {
		return v
	}
	return 1
}

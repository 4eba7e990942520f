package relay

import "github.com/pion/srtp/v3"

// newContexts creates the pair of SRTP contexts of one leg or stream: dec
// for what the peer sends (with replay protection, RFC 3711 section
// 3.3.2), enc for what is sent to it.
func newContexts(profile srtp.ProtectionProfile, localKey, localSalt, remoteKey, remoteSalt []byte) (dec, enc *srtp.Context, err error) {
	dec, err = srtp.CreateContext(remoteKey, remoteSalt, profile,
		srtp.SRTPReplayProtection(ReplayWindow), srtp.SRTCPReplayProtection(ReplayWindow))
	if err != nil {
		return nil, nil, err
	}
	enc, err = srtp.CreateContext(localKey, localSalt, profile)
	if err != nil {
		return nil, nil, err
	}
	return dec, enc, nil
}

// setKeys installs (or, with nils, removes) SRTP contexts under the leg's
// direction locks: the leg's own for a WebRTC transport (st nil), a
// stream's for SDES.
func (l *Leg) setKeys(st *Stream, dec, enc *srtp.Context) {
	l.inMu.Lock()
	if st == nil {
		l.dec = dec
	} else {
		st.dec = dec
	}
	l.inMu.Unlock()
	l.outMu.Lock()
	if st == nil {
		l.enc = enc
	} else {
		st.enc = enc
	}
	l.outMu.Unlock()
}

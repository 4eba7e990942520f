package relay

import (
	"errors"

	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// newContexts creates the pair of SRTP contexts of one leg or stream: dec
// for what the peer sends (with replay protection, RFC 3711 section
// 3.3.2: replayWindow), enc for what is sent to it.
func newContexts(profile srtp.ProtectionProfile, localKey, localSalt, remoteKey, remoteSalt []byte) (dec, enc *srtp.Context, err error) {
	dec, err = srtp.CreateContext(remoteKey, remoteSalt, profile, replayOptions()...)
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
		l.decProven, l.rocGuesses = false, rocGuesses{}
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

// errSRTPReplay is the error pion/srtp wraps in what it returns for a
// replayed SRTP or SRTCP packet ("duplicated packet"). pion exports no
// sentinel for it (only ErrFailedToVerifyAuthTag), so it is learnt once, at
// start, by replaying a packet: the innermost error of what that returns,
// which errors.Is then finds in every later replay error. A pion upgrade
// that changes this would make replays count as drop_malformed:
// TestReplayIsCountedAsReplay pins it, for SRTP and SRTCP.
var errSRTPReplay = probeReplayError()

func probeReplayError() error {
	key, salt := make([]byte, 16), make([]byte, 12)
	enc, err1 := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	dec, err2 := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(64))
	if err1 != nil || err2 != nil {
		return errors.New("relay: srtp replay probe failed")
	}
	pkt := []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa}
	ct, err := enc.EncryptRTP(nil, pkt, nil)
	if err != nil {
		return err
	}
	if _, err := dec.DecryptRTP(nil, append([]byte(nil), ct...), nil); err != nil {
		return err
	}
	_, err = dec.DecryptRTP(nil, ct, nil)
	if err == nil || errors.Unwrap(err) == nil {
		// A bare error value per packet could never match errors.Is.
		return errors.New("relay: srtp replay probe found no wrapped error")
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return err
}

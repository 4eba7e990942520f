package relay

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"google.golang.org/grpc/codes"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// sdesProfile maps an RFC 4568 crypto-suite name to a pion/srtp profile.
func sdesProfile(suite string) (srtp.ProtectionProfile, error) {
	switch suite {
	case "AES_CM_128_HMAC_SHA1_80":
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	case "AES_CM_128_HMAC_SHA1_32":
		return srtp.ProtectionProfileAes128CmHmacSha1_32, nil
	case "AEAD_AES_128_GCM":
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case "AEAD_AES_256_GCM":
		return srtp.ProtectionProfileAeadAes256Gcm, nil
	}
	return 0, fmt.Errorf("unsupported SDES crypto suite %q", suite)
}

// sdesKeys are a plain stream's SDES-SRTP keys (RFC 4568) and the contexts
// made from them. Immutable once published (Stream.keys).
type sdesKeys struct {
	suite         string
	local, remote []byte // key and salt
	dec, enc      *srtp.Context
}

// sdesChange is what a change does to a stream's SDES keys: nothing
// (keep), or install keys (nil keys: back to plain RTP/AVP).
type sdesChange struct {
	set  bool
	keys *sdesKeys
}

// planSDES works out a plain stream's keys for spec sd, given the ones it
// has (cur, nil for none): the peer's key decrypts what it sends, the
// node's (generated when the spec leaves it empty, and kept across
// updates) encrypts what is sent to it. Keys that did not change keep
// their contexts, so the replay and rollover state survives a re-INVITE
// that merely repeats them, and the node's key its encrypting context
// whatever else changes. It changes nothing.
func planSDES(cur *sdesKeys, sd *pb.SDESCrypto) (sdesChange, error) {
	if sd == nil {
		return sdesChange{set: cur != nil}, nil
	}
	profile, err := sdesProfile(sd.GetSuite())
	if err != nil {
		return sdesChange{}, statusf(codes.InvalidArgument, "%v", err)
	}
	keyLen, _ := profile.KeyLen()
	saltLen, _ := profile.SaltLen()
	want := keyLen + saltLen
	local := sd.GetLocalKey()
	switch {
	case len(local) == 0 && cur != nil && cur.suite == sd.GetSuite() && len(cur.local) == want:
		local = cur.local // keep ours across re-offers
	case len(local) == 0:
		local = make([]byte, want)
		rand.Read(local)
	case len(local) != want:
		return sdesChange{}, statusf(codes.InvalidArgument, "SDES local key is %d bytes, %s needs %d", len(local), sd.GetSuite(), want)
	}
	remote := sd.GetRemoteKey()
	if len(remote) != want {
		return sdesChange{}, statusf(codes.InvalidArgument, "SDES remote key is %d bytes, %s needs %d", len(remote), sd.GetSuite(), want)
	}
	if cur != nil && cur.suite == sd.GetSuite() && bytes.Equal(cur.local, local) && bytes.Equal(cur.remote, remote) {
		return sdesChange{}, nil
	}
	// Our key keeps its encrypting context whatever else changes (a PBX
	// that rekeys its own direction in a re-INVITE changes the remote key
	// only): a new context would number SRTP and SRTCP from the start again
	// under the same key, keystream (AES-CM) or a nonce (AES-GCM) used twice
	// (RFC 3711 section 9.2, RFC 7714 section 8.1). Under another suite the
	// same key would be no better.
	sameLocal := cur != nil && bytes.Equal(cur.local, local)
	if sameLocal && cur.suite != sd.GetSuite() {
		return sdesChange{}, statusf(codes.InvalidArgument, "SDES local key reused under %s (was %s): it would encrypt at indexes it used (RFC 3711 section 9.2)", sd.GetSuite(), cur.suite)
	}
	var dec, enc *srtp.Context
	if sameLocal {
		dec, err = srtp.CreateContext(remote[:keyLen], remote[keyLen:], profile, replayOptions()...)
		enc = cur.enc
	} else {
		dec, enc, err = newContexts(profile, local[:keyLen], local[keyLen:], remote[:keyLen], remote[keyLen:])
	}
	if err != nil {
		return sdesChange{}, statusf(codes.InvalidArgument, "SDES keys: %v", err)
	}
	return sdesChange{set: true, keys: &sdesKeys{
		suite:  sd.GetSuite(),
		local:  bytes.Clone(local),
		remote: bytes.Clone(remote),
		dec:    dec,
		enc:    enc,
	}}, nil
}

// install publishes a stream's new SDES keys to the packet path. Called
// with sess.mu held.
func (c sdesChange) install(st *Stream) {
	if !c.set {
		return
	}
	l := st.leg
	if c.keys == nil {
		st.sdes.Store(false)
		l.setKeys(st, nil, nil)
	} else {
		l.setKeys(st, c.keys.dec, c.keys.enc)
		st.sdes.Store(true)
	}
	st.keys = c.keys
}

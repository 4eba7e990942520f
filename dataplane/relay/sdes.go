package relay

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/pion/srtp/v3"
	"google.golang.org/grpc/codes"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
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

// setSDES installs a plain stream's SDES-SRTP keys (RFC 4568): the peer's
// key decrypts what it sends, the node's (generated when the spec leaves it
// empty, and kept across updates) encrypts what is sent to it. Keys that did
// not change keep their contexts, so the replay and rollover state survives
// a re-INVITE that merely repeats them.
func setSDES(st *Stream, sd *pb.SDESCrypto) error {
	l := st.leg
	if sd == nil {
		if st.sdes.Load() {
			st.sdes.Store(false)
			l.setKeys(st, nil, nil)
			st.sdesSuite, st.sdesLocalKey, st.sdesRemote = "", nil, nil
		}
		return nil
	}
	profile, err := sdesProfile(sd.GetSuite())
	if err != nil {
		return statusf(codes.InvalidArgument, "%v", err)
	}
	keyLen, _ := profile.KeyLen()
	saltLen, _ := profile.SaltLen()
	want := keyLen + saltLen
	local := sd.GetLocalKey()
	switch {
	case len(local) == 0 && st.sdesSuite == sd.GetSuite() && len(st.sdesLocalKey) == want:
		local = st.sdesLocalKey // keep ours across re-offers
	case len(local) == 0:
		local = make([]byte, want)
		rand.Read(local)
	case len(local) != want:
		return statusf(codes.InvalidArgument, "SDES local key is %d bytes, %s needs %d", len(local), sd.GetSuite(), want)
	}
	remote := sd.GetRemoteKey()
	if len(remote) != want {
		return statusf(codes.InvalidArgument, "SDES remote key is %d bytes, %s needs %d", len(remote), sd.GetSuite(), want)
	}
	if st.sdes.Load() && st.sdesSuite == sd.GetSuite() && bytes.Equal(st.sdesLocalKey, local) && bytes.Equal(st.sdesRemote, remote) {
		return nil
	}
	dec, enc, err := newContexts(profile, local[:keyLen], local[keyLen:], remote[:keyLen], remote[keyLen:])
	if err != nil {
		return statusf(codes.InvalidArgument, "SDES keys: %v", err)
	}
	l.setKeys(st, dec, enc)
	st.sdesSuite = sd.GetSuite()
	st.sdesLocalKey = append([]byte(nil), local...)
	st.sdesRemote = append([]byte(nil), remote...)
	st.sdes.Store(true)
	return nil
}

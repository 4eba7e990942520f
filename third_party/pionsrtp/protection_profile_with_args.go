// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package srtp

// protectionProfileWithArgs is a wrapper around ProtectionProfile that allows to
// specify additional arguments for the profile.
//
// Strait: the tag lengths are worked out once, at construction (upstream
// works them out from the profile several times per packet).
type protectionProfileWithArgs struct {
	ProtectionProfile
	authTagRTPLen *int

	rtpTagLen, rtcpTagLen, aeadTagLen int
	rtpTagErr, rtcpTagErr, aeadTagErr error
}

func newProtectionProfileWithArgs(profile ProtectionProfile, authTagRTPLen *int) protectionProfileWithArgs {
	p := protectionProfileWithArgs{ProtectionProfile: profile, authTagRTPLen: authTagRTPLen}
	if authTagRTPLen != nil {
		p.rtpTagLen = *authTagRTPLen
	} else {
		p.rtpTagLen, p.rtpTagErr = profile.AuthTagRTPLen()
	}
	p.rtcpTagLen, p.rtcpTagErr = profile.AuthTagRTCPLen()
	p.aeadTagLen, p.aeadTagErr = profile.AEADAuthTagLen()

	return p
}

// AuthTagRTPLen returns length of RTP authentication tag in bytes for AES protection profiles.
// For AEAD ones it returns zero.
func (p *protectionProfileWithArgs) AuthTagRTPLen() (int, error) {
	return p.rtpTagLen, p.rtpTagErr
}

// AuthTagRTCPLen returns length of RTCP authentication tag in bytes for AES protection profiles.
// For AEAD ones it returns zero.
func (p *protectionProfileWithArgs) AuthTagRTCPLen() (int, error) {
	return p.rtcpTagLen, p.rtcpTagErr
}

// AEADAuthTagLen returns length of the AEAD authentication tag in bytes (zero for AES-CM ones).
func (p *protectionProfileWithArgs) AEADAuthTagLen() (int, error) {
	return p.aeadTagLen, p.aeadTagErr
}

package sdp

import (
	"fmt"
	"strings"
)

// Setup is the a=setup attribute (RFC 4145 section 4, RFC 5763 section 5):
// which end starts the DTLS handshake.
type Setup uint8

// Setup values.
const (
	// SetupNone: the attribute is absent.
	SetupNone Setup = iota
	// SetupActpass: either role; what an offer says (RFC 8842 section 5.2).
	SetupActpass
	// SetupActive: the author starts the handshake (DTLS client).
	SetupActive
	// SetupPassive: the author waits for it (DTLS server).
	SetupPassive
	// SetupHoldconn: no connection for now.
	SetupHoldconn
)

// String returns the attribute value, or "" for SetupNone.
func (s Setup) String() string {
	switch s {
	case SetupActpass:
		return "actpass"
	case SetupActive:
		return "active"
	case SetupPassive:
		return "passive"
	case SetupHoldconn:
		return "holdconn"
	}
	return ""
}

func parseSetup(v string) (Setup, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "actpass":
		return SetupActpass, true
	case "active":
		return SetupActive, true
	case "passive":
		return SetupPassive, true
	case "holdconn":
		return SetupHoldconn, true
	}
	return SetupNone, false
}

// DTLSRole is Strait's role in a WebRTC leg's DTLS handshake. The values
// match the dataplane's DTLSRole enum.
type DTLSRole uint8

// DTLS roles.
const (
	// RoleUnknown: not decided yet (Strait's actpass offer awaits an answer).
	RoleUnknown DTLSRole = iota
	// RoleClient: Strait starts the handshake (its SDP says active).
	RoleClient
	// RoleServer: the peer starts it (Strait's SDP says passive).
	RoleServer
)

// String returns "client", "server" or "unknown".
func (r DTLSRole) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return "unknown"
}

// setup returns the a=setup value an answer taking role r carries.
func (r DTLSRole) setup() Setup {
	if r == RoleServer {
		return SetupPassive
	}
	return SetupActive
}

// DTLSRoleForOffer returns Strait's DTLS role when it answers a peer's offer
// whose a=setup is peerOffer, and so what setup [WebRTCAnswer] writes.
// current is Strait's role on the leg so far (RoleUnknown on a new leg): an
// actpass re-offer keeps it, so that the existing DTLS association survives
// (RFC 8842 section 5.5). On a new leg an actpass offer makes Strait the
// client (a=setup:active), as RFC 5763 section 5 recommends. An offer
// without the attribute, or with holdconn, is treated as actpass.
func DTLSRoleForOffer(peerOffer Setup, current DTLSRole) DTLSRole {
	switch peerOffer {
	case SetupActive:
		return RoleServer
	case SetupPassive:
		return RoleClient
	}
	if current != RoleUnknown {
		return current
	}
	return RoleClient
}

// DTLSRoleFromAnswer returns Strait's DTLS role once the peer answered
// Strait's actpass offer with peerAnswer. An answer without the attribute
// means passive (RFC 4145 section 4). An answer that does not choose a role
// is unacceptable (488).
func DTLSRoleFromAnswer(peerAnswer Setup) (DTLSRole, error) {
	switch peerAnswer {
	case SetupActive:
		return RoleServer, nil
	case SetupPassive, SetupNone:
		return RoleClient, nil
	}
	return RoleUnknown, unacceptable("answer has a=setup:%s, want active or passive", peerAnswer)
}

// Fingerprint is a certificate fingerprint as a=fingerprint carries it
// (RFC 8122 section 5).
type Fingerprint struct {
	// Algorithm is the hash function name, lower case, e.g. "sha-256".
	Algorithm string
	// Value is the digest as colon-separated hex pairs, e.g. "AB:CD:...".
	Value string
}

// IsZero reports whether f is unset.
func (f Fingerprint) IsZero() bool { return f.Algorithm == "" && f.Value == "" }

// Equal reports whether f and o name the same digest, ignoring case.
func (f Fingerprint) Equal(o Fingerprint) bool {
	return strings.EqualFold(f.Algorithm, o.Algorithm) && strings.EqualFold(f.Value, o.Value)
}

// fingerprintSizes are digest lengths in bytes of the hash functions RFC 8122
// section 5 names, so that a truncated fingerprint is caught at parse time
// rather than as a failed handshake.
var fingerprintSizes = map[string]int{
	"md2":     16,
	"md5":     16,
	"sha-1":   20,
	"sha-224": 28,
	"sha-256": 32,
	"sha-384": 48,
	"sha-512": 64,
}

// parseFingerprint reads "sha-256 AB:CD:...".
func parseFingerprint(v string) (Fingerprint, error) {
	fields := strings.Fields(v)
	if len(fields) != 2 {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: want \"<hash> <hex>\"", v)
	}
	f := Fingerprint{Algorithm: strings.ToLower(fields[0]), Value: fields[1]}
	if err := f.validate(); err != nil {
		return Fingerprint{}, err
	}
	return f, nil
}

// validate checks the value is colon-separated hex pairs of the algorithm's
// digest length (any length for a hash RFC 8122 does not name).
func (f Fingerprint) validate() error {
	if f.Algorithm == "" {
		return fmt.Errorf("fingerprint %q: no hash function", f.Value)
	}
	pairs := strings.Split(f.Value, ":")
	for _, p := range pairs {
		if len(p) != 2 || !isHex(p[0]) || !isHex(p[1]) {
			return fmt.Errorf("fingerprint %q: not colon-separated hex pairs", f.Value)
		}
	}
	if n, ok := fingerprintSizes[strings.ToLower(f.Algorithm)]; ok && len(pairs) != n {
		return fmt.Errorf("fingerprint %s %q: %d bytes, want %d", f.Algorithm, f.Value, len(pairs), n)
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

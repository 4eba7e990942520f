// Package dtlsleg runs the DTLS-SRTP handshake (RFC 5763, RFC 5764) of one
// WebRTC leg over a UDP socket that the dataplane shares between many legs.
//
// The packet workers never block on DTLS: they hand each DTLS datagram of a
// leg to its Transport with Deliver, a copy into a bounded queue that drops
// (and reports) when full, in the way wireguard-go queues handshake messages.
// One goroutine per leg runs pion/dtls over that Transport; when the handshake
// completes it derives the SRTP master keys and returns them. Handshakes are
// rare and slow next to media; media never waits for them.
package dtlsleg

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/logging"
	"github.com/pion/srtp/v3"
)

// Role is the DTLS role Strait plays on a leg.
type Role int

// Roles. With a=setup:active Strait is the client (RFC 5763 section 5).
const (
	Client Role = iota + 1
	Server
)

func (r Role) String() string {
	switch r {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "unknown"
}

// Profiles are the SRTP protection profiles offered, in order of preference:
// AEAD_AES_128_GCM first because it costs about a third of
// AES_CM_128_HMAC_SHA1_80 per packet in pion/srtp (see LIBRARY-NOTES), then
// the HMAC profile that every browser supports (RFC 8827 section 6.5).
var Profiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// DefaultTimeout bounds a handshake. Browsers retransmit flights for about
// 30 s before giving up (RFC 6347 section 4.2.4.1 backoff up to 60 s); a leg
// that has not completed by then is failed so the control plane can act.
const DefaultTimeout = 30 * time.Second

// Config is what one handshake needs.
type Config struct {
	// Certificate is the node's certificate (ECDSA P-256, self-signed).
	Certificate tls.Certificate
	// Role is Strait's DTLS role on this leg.
	Role Role
	// RemoteFingerprint is the peer's a=fingerprint: algorithm ("sha-256")
	// and colon-separated hex value, compared case-insensitively.
	RemoteAlgorithm, RemoteFingerprint string
	// Timeout bounds the handshake; 0 means DefaultTimeout.
	Timeout time.Duration
}

// ErrFingerprintMismatch means the peer's certificate does not match the
// fingerprint its SDP announced: a man in the middle, or a signalling bug.
var ErrFingerprintMismatch = errors.New("dtlsleg: peer certificate does not match the SDP fingerprint")

// ErrNoProfile means the handshake completed without an SRTP profile (the
// peer did not negotiate use_srtp, RFC 5764 section 4.1.1).
var ErrNoProfile = errors.New("dtlsleg: no SRTP protection profile negotiated")

// Result is what a completed handshake yields.
type Result struct {
	// Conn is the DTLS connection; keep reading it (Serve) so that
	// retransmitted final flights are answered and close_notify is seen.
	Conn *dtls.Conn
	// SRTP holds the profile and the local (send) and remote (receive)
	// master keys and salts.
	SRTP srtp.Config
}

// quietLogs keeps pion's own logging out of the node's logs: handshake
// failures are returned as errors and reported by the caller.
var quietLogs = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}

// Handshake runs the handshake of one leg over t and derives SRTP keys.
// It returns when the handshake completes, fails, times out or ctx ends.
func Handshake(ctx context.Context, t *Transport, cfg Config) (*Result, error) {
	hash, err := fingerprint.HashFromString(strings.ToLower(cfg.RemoteAlgorithm))
	if err != nil {
		return nil, fmt.Errorf("dtlsleg: fingerprint algorithm %q: %w", cfg.RemoteAlgorithm, err)
	}
	want := cfg.RemoteFingerprint
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		return verifyFingerprint(raw, hash, want)
	}
	shared := []dtls.Option{
		dtls.WithCertificates(cfg.Certificate),
		dtls.WithSRTPProtectionProfiles(Profiles...),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		// Self-signed certificates: trust comes from the fingerprint in the
		// signalled SDP (RFC 8122 section 5), not from a CA chain.
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithLoggerFactory(quietLogs),
	}
	var conn *dtls.Conn
	if cfg.Role == Client {
		opts := make([]dtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		conn, err = dtls.ClientWithOptions(t, t.RemoteAddr(), opts...)
	} else {
		opts := make([]dtls.ServerOption, 0, len(shared)+1)
		for _, o := range shared {
			opts = append(opts, o)
		}
		// Browsers always present a certificate; its fingerprint is the
		// only authentication the peer has (RFC 8827 section 6.5).
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		conn, err = dtls.ServerWithOptions(t, t.RemoteAddr(), opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("dtlsleg: %w", err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dtlsleg: %s handshake: %w", cfg.Role, err)
	}
	res, err := keys(conn, cfg.Role)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return res, nil
}

func verifyFingerprint(raw [][]byte, hash crypto.Hash, want string) error {
	if len(raw) == 0 {
		return ErrFingerprintMismatch
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("dtlsleg: peer certificate: %w", err)
	}
	got, err := fingerprint.Fingerprint(cert, hash)
	if err != nil {
		return err
	}
	// pion prints lower-case hex, browsers upper-case: RFC 8122 section 5
	// makes the comparison case-insensitive.
	if !strings.EqualFold(got, strings.TrimSpace(want)) {
		return ErrFingerprintMismatch
	}
	return nil
}

func keys(conn *dtls.Conn, role Role) (*Result, error) {
	p, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, ErrNoProfile
	}
	var profile srtp.ProtectionProfile
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return nil, fmt.Errorf("%w (got %#04x)", ErrNoProfile, uint16(p))
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("dtlsleg: no connection state after handshake")
	}
	res := &Result{Conn: conn, SRTP: srtp.Config{Profile: profile}}
	if err := res.SRTP.ExtractSessionKeysFromDTLS(&state, role == Client); err != nil {
		return nil, fmt.Errorf("dtlsleg: exporting SRTP keys: %w", err)
	}
	return res, nil
}

// Serve reads the connection after the handshake until it is closed (by the
// peer's close_notify, by Close, or by the Transport closing). Reading keeps
// pion answering a peer that retransmits its last flight because ours was
// lost. WebRTC carries no DTLS application data here (no data channels), so
// whatever arrives is discarded.
func Serve(conn *dtls.Conn) error {
	buf := make([]byte, 1500)
	for {
		if _, err := conn.Read(buf); err != nil {
			return err
		}
	}
}

// ProfileName returns the SDP/RFC name of an SRTP profile.
func ProfileName(p srtp.ProtectionProfile) string {
	switch p {
	case srtp.ProtectionProfileAeadAes128Gcm:
		return "AEAD_AES_128_GCM"
	case srtp.ProtectionProfileAes128CmHmacSha1_80:
		return "AES_CM_128_HMAC_SHA1_80"
	case srtp.ProtectionProfileAes128CmHmacSha1_32:
		return "AES_CM_128_HMAC_SHA1_32"
	case srtp.ProtectionProfileAeadAes256Gcm:
		return "AEAD_AES_256_GCM"
	}
	return fmt.Sprintf("profile-%#04x", uint16(p))
}

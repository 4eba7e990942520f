// Package webrtcclient is the browser side of a WebRTC leg as the bench
// harness plays it, thousands at a time: ICE connectivity checks as the
// controlling agent with aggressive nomination (RFC 8445 section 7.2,
// built with pion/stun), the DTLS-SRTP handshake (RFC 5763, RFC 5764) with
// pion/dtls over the leg's own socket, SRTP contexts from the exported
// keys (pion/srtp), and consent freshness checks (RFC 7675) afterwards.
//
// A Leg runs on one rtpgen.Endpoint: the Engine's sink hands it the ICE and
// DTLS datagrams that arrive there, and sends media from the same socket
// once the keys are in place. One socket per client leg is what a browser
// has too (one per PeerConnection), so the relay sees as many 5-tuples as it
// would in production; sharing client sockets would need demultiplexing
// DTLS by the relay's address, which a relay that multiplexes its WebRTC
// legs on a few ports does not distinguish.
//
// The Leg also answers the relay's own checks, which a full ICE agent (as
// rtpengine is) sends; an ICE-lite relay (Strait) never does.
package webrtcclient

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"

	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/dataplane/dtlsleg"
)

// Identity is a client certificate and its SDP fingerprint. Every leg of a
// run may share one: the handshake still runs in full per leg.
type Identity struct {
	Certificate tls.Certificate
	// Fingerprint is the SHA-256 fingerprint, upper-case colon hex, as a
	// browser writes it in a=fingerprint.
	Fingerprint string
}

// NewIdentity generates an ECDSA P-256 self-signed certificate, as
// browsers use.
func NewIdentity() (*Identity, error) {
	c, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, err
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &Identity{Certificate: c, Fingerprint: strings.ToUpper(fp)}, nil
}

// Profile names an SRTP protection profile the client offers alone, so that
// the run measures that profile whatever the relay prefers.
type Profile struct {
	Name string
	DTLS dtls.SRTPProtectionProfile
	SRTP srtp.ProtectionProfile
}

// The two profiles browsers negotiate.
var (
	GCM  = Profile{"AEAD_AES_128_GCM", dtls.SRTP_AEAD_AES_128_GCM, srtp.ProtectionProfileAeadAes128Gcm}
	CM80 = Profile{"AES_CM_128_HMAC_SHA1_80", dtls.SRTP_AES128_CM_HMAC_SHA1_80, srtp.ProtectionProfileAes128CmHmacSha1_80}
)

// Timing constants.
const (
	// checkInterval is the retransmission interval of connectivity checks
	// (RFC 8445 section 14.2 paces new checks at Ta = 50 ms).
	checkInterval = 50 * time.Millisecond
	// ConsentInterval is how often a connected leg refreshes consent: RFC
	// 7675 section 5.1 sends a check every 5 s (randomised by the caller).
	ConsentInterval = 5 * time.Second
)

// quietLogs keeps pion's logging out of the harness's output.
var quietLogs = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}

// Leg is one WebRTC client leg.
type Leg struct {
	// Ufrag and Pwd are the client's ICE credentials (its SDP's a=ice-ufrag
	// and a=ice-pwd).
	Ufrag, Pwd string
	// Endpoint is the leg's socket.
	Endpoint *rtpgen.Endpoint

	id        *Identity
	tiebreak  uint64
	transport *dtlsleg.Transport

	mu          sync.Mutex // guards the fields below
	remote      netip.AddrPort
	remoteUfrag string
	remotePwd   string
	waiting     map[[stun.TransactionIDSize]byte]chan struct{}
	conn        *dtls.Conn
	closed      bool
}

// NewLeg makes a client leg on ep (and takes over its control datagrams).
func NewLeg(ep *rtpgen.Endpoint, id *Identity) *Leg {
	l := &Leg{
		Ufrag:    randomICE(8),
		Pwd:      randomICE(24),
		Endpoint: ep,
		id:       id,
		waiting:  make(map[[stun.TransactionIDSize]byte]chan struct{}),
	}
	var b [8]byte
	rand.Read(b[:])
	for i := range b {
		l.tiebreak = l.tiebreak<<8 | uint64(b[i])
	}
	l.transport = dtlsleg.NewTransport(ep.Addr(), netip.AddrPort{}, l.sendDTLS)
	ep.SetControl(l.control)
	return l
}

func (l *Leg) sendDTLS(b []byte) error {
	l.mu.Lock()
	to := l.remote
	l.mu.Unlock()
	return l.Endpoint.Sock.SendTo(b, to)
}

// Remote is what the relay's SDP says of its side of the leg.
type Remote struct {
	// Addr is the relay's ICE candidate (rtcp-mux: the one component).
	Addr netip.AddrPort
	// Ufrag and Pwd are the relay's ICE credentials.
	Ufrag, Pwd string
	// Fingerprint is the relay's sha-256 certificate fingerprint.
	Fingerprint string
	// DTLSClient is true when the client must act as the DTLS client (the
	// relay answered a=setup:passive, or Strait's leg role is SERVER).
	DTLSClient bool
}

// Keys are a connected leg's SRTP contexts: Enc protects what the client
// sends, Dec unprotects what it receives.
type Keys struct {
	Profile  Profile
	Enc, Dec *srtp.Context
	// ICE is how long connectivity checks took to get an answer; Handshake
	// the time from the first check to DTLS completion.
	ICE, Handshake time.Duration
}

// Connect runs ICE to r and then the DTLS handshake, offering only
// profile, and returns the leg's SRTP contexts. After it returns, the DTLS
// connection keeps being served (so retransmitted flights are answered)
// until Close.
func (l *Leg) Connect(ctx context.Context, r Remote, profile Profile) (*Keys, error) {
	l.mu.Lock()
	l.remote, l.remoteUfrag, l.remotePwd = r.Addr, r.Ufrag, r.Pwd
	l.mu.Unlock()
	l.transport.SetRemote(r.Addr)
	start := time.Now()

	// The relay may start DTLS (as client) as soon as our first check
	// arrives, so the handshake runs from the start; it only waits for
	// datagrams meanwhile.
	type result struct {
		conn *dtls.Conn
		err  error
	}
	hs := make(chan result, 1)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	iceDone := make(chan struct{})
	go func() {
		if r.DTLSClient {
			// A DTLS client must not speak before ICE succeeded (RFC 5763
			// section 5 runs DTLS over the selected pair).
			select {
			case <-iceDone:
			case <-hctx.Done():
				hs <- result{nil, hctx.Err()}
				return
			}
		}
		c, err := l.handshake(hctx, r, profile)
		hs <- result{c, err}
	}()

	var iceTime time.Duration
	if err := l.check(hctx, true); err != nil {
		cancel()
		<-hs
		return nil, fmt.Errorf("webrtcclient: ICE to %v: %w", r.Addr, err)
	}
	iceTime = time.Since(start)
	close(iceDone)
	res := <-hs
	if res.err != nil {
		return nil, fmt.Errorf("webrtcclient: DTLS with %v: %w", r.Addr, res.err)
	}
	keys, err := l.keys(res.conn, r.DTLSClient, profile)
	if err != nil {
		res.conn.Close()
		return nil, err
	}
	keys.ICE, keys.Handshake = iceTime, time.Since(start)
	l.mu.Lock()
	l.conn = res.conn
	l.mu.Unlock()
	go dtlsleg.Serve(res.conn)
	return keys, nil
}

func (l *Leg) handshake(ctx context.Context, r Remote, profile Profile) (*dtls.Conn, error) {
	want := r.Fingerprint
	opts := []dtls.Option{
		dtls.WithCertificates(l.id.Certificate),
		dtls.WithSRTPProtectionProfiles(profile.DTLS),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			fp, err := fingerprint.Fingerprint(c, crypto.SHA256)
			if err != nil {
				return err
			}
			if !strings.EqualFold(fp, strings.TrimSpace(want)) {
				return fmt.Errorf("relay certificate %s does not match the SDP fingerprint %s", fp, want)
			}
			return nil
		}),
		dtls.WithLoggerFactory(quietLogs),
	}
	var conn *dtls.Conn
	var err error
	if r.DTLSClient {
		co := make([]dtls.ClientOption, len(opts))
		for i, o := range opts {
			co[i] = o
		}
		conn, err = dtls.ClientWithOptions(l.transport, l.transport.RemoteAddr(), co...)
	} else {
		so := make([]dtls.ServerOption, 0, len(opts)+1)
		for _, o := range opts {
			so = append(so, o)
		}
		so = append(so, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		conn, err = dtls.ServerWithOptions(l.transport, l.transport.RemoteAddr(), so...)
	}
	if err != nil {
		return nil, err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (l *Leg) keys(conn *dtls.Conn, client bool, profile Profile) (*Keys, error) {
	p, ok := conn.SelectedSRTPProtectionProfile()
	if !ok || p != profile.DTLS {
		return nil, fmt.Errorf("webrtcclient: relay chose SRTP profile %#04x, offered %s", uint16(p), profile.Name)
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("webrtcclient: no DTLS state")
	}
	cfg := srtp.Config{Profile: profile.SRTP}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, err
	}
	enc, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile.SRTP)
	if err != nil {
		return nil, err
	}
	dec, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile.SRTP)
	if err != nil {
		return nil, err
	}
	return &Keys{Profile: profile, Enc: enc, Dec: dec}, nil
}

// check sends connectivity checks (nominating, as a controlling agent with
// aggressive nomination) every checkInterval until one is answered with a
// valid response, or ctx ends.
func (l *Leg) check(ctx context.Context, nominate bool) error {
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	for {
		done, err := l.sendCheck(nominate)
		if err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// SendConsent sends one consent freshness check (RFC 7675 section 5.1):
// a Binding request on the selected pair. The answer is not awaited.
func (l *Leg) SendConsent() error {
	_, err := l.sendCheck(false)
	return err
}

func (l *Leg) sendCheck(nominate bool) (<-chan struct{}, error) {
	l.mu.Lock()
	to, user, pwd := l.remote, l.remoteUfrag+":"+l.Ufrag, l.remotePwd
	l.mu.Unlock()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(user),
		ice.PriorityAttr(2130706431), // host candidate, RFC 8445 section 5.1.2.1
		ice.AttrControlling(l.tiebreak),
	}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	l.mu.Lock()
	if len(l.waiting) > 64 { // consent answers nobody waits for
		clear(l.waiting)
	}
	l.waiting[m.TransactionID] = done
	l.mu.Unlock()
	return done, l.Endpoint.Sock.SendTo(m.Raw, to)
}

// control gets the leg's ICE and DTLS datagrams from the sink goroutine.
func (l *Leg) control(pkt []byte, from netip.AddrPort) {
	if !stun.IsMessage(pkt) {
		l.transport.Deliver(pkt) // DTLS; copied
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), pkt...)}
	if err := m.Decode(); err != nil {
		return
	}
	l.mu.Lock()
	pwd, local := l.remotePwd, l.Ufrag
	l.mu.Unlock()
	switch m.Type {
	case stun.BindingSuccess:
		if stun.NewShortTermIntegrity(pwd).Check(m) != nil {
			return
		}
		l.mu.Lock()
		done := l.waiting[m.TransactionID]
		delete(l.waiting, m.TransactionID)
		l.mu.Unlock()
		if done != nil {
			close(done)
		}
	case stun.BindingRequest:
		// A full ICE relay's own check (triggered check, RFC 8445 section
		// 7.3.1.4): answer it, as the browser would.
		var u stun.Username
		if u.GetFrom(m) != nil || !strings.HasPrefix(u.String(), local+":") {
			return
		}
		if stun.NewShortTermIntegrity(l.Pwd).Check(m) != nil {
			return
		}
		ip := from.Addr().AsSlice()
		resp, err := stun.Build(m, stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IP(ip), Port: int(from.Port())},
			stun.NewShortTermIntegrity(l.Pwd), stun.Fingerprint)
		if err == nil {
			l.Endpoint.Sock.SendTo(resp.Raw, from)
		}
	}
}

// Close ends the DTLS association (close_notify) and the leg's goroutines.
// The Endpoint stays open (the caller closes it through the Engine).
func (l *Leg) Close() {
	l.mu.Lock()
	conn, closed := l.conn, l.closed
	l.closed = true
	l.mu.Unlock()
	if closed {
		return
	}
	if conn != nil {
		conn.Close()
	}
	l.transport.Close()
}

const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// randomICE returns n random ice-chars (RFC 8445 section 5.3).
func randomICE(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = iceChars[int(b[i])%len(iceChars)]
	}
	return string(b)
}

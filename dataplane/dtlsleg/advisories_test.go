package dtlsleg

import (
	"bufio"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// Regression tests for the pion advisories that concern what the node
// runs (issue 8 item 11). The fixes are in the pinned versions (checked
// below); these tests keep them from coming back through a downgrade or a
// change in how this package drives pion.

// TestPinnedPionCarriesAdvisoryFixes reads go.mod: the pinned pion modules
// are at or past the releases that fixed
//   - CVE-2022-29189 and CVE-2022-29190 (pion/dtls 2.1.4: unbounded fragment
//     buffer; infinite loop on zero-length fragments),
//   - CVE-2022-29222 (pion/dtls 2.1.5: a client certificate accepted without
//     proof of possession),
//   - GHSA-f26w-gh5m-qq77 / CVE-2025-49140 (pion/interceptor 0.1.39: panic on
//     crafted RTP padding).
//
// The dtls/v3 line descends from v2.2, after both fixes; pion/interceptor
// is linked only by the test peers (pion/webrtc), never by the node.
func TestPinnedPionCarriesAdvisoryFixes(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(file), "..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pinned := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && strings.HasPrefix(fields[0], "github.com/pion/") {
			pinned[fields[0]] = fields[1]
		}
	}
	for mod, min := range map[string]string{
		"github.com/pion/dtls/v3":     "v3.0.0",
		"github.com/pion/interceptor": "v0.1.39",
		"github.com/pion/srtp/v3":     "v3.0.0",
	} {
		v, ok := pinned[mod]
		if !ok {
			t.Errorf("%s is not pinned in go.mod", mod)
			continue
		}
		if !atLeast(v, min) {
			t.Errorf("%s %s is older than %s, which carries the advisory fixes", mod, v, min)
		}
	}
	for _, old := range []string{"github.com/pion/dtls", "github.com/pion/dtls/v2"} {
		if v, ok := pinned[old]; ok && !atLeast(v, "v2.1.5") {
			t.Errorf("%s %s is pinned: CVE-2022-29190/29222 are fixed in v2.1.5", old, v)
		}
	}
}

// atLeast compares two vMAJOR.MINOR.PATCH versions (pre-release suffixes
// count as their release).
func atLeast(v, min string) bool {
	parse := func(s string) [3]int {
		var out [3]int
		s = strings.TrimPrefix(s, "v")
		if i := strings.IndexAny(s, "-+"); i >= 0 {
			s = s[:i]
		}
		for i, p := range strings.SplitN(s, ".", 3) {
			out[i], _ = strconv.Atoi(p)
		}
		return out
	}
	a, b := parse(v), parse(min)
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return true
}

// zeroLengthFragment is a DTLS 1.2 handshake record whose ClientHello
// claims 200 bytes but carries a fragment of length 0 at offset 0: what
// made pion/dtls before 2.1.4 loop forever in its fragment buffer
// (CVE-2022-29190).
var zeroLengthFragment = []byte{
	22, 0xfe, 0xfd, // handshake, DTLS 1.2
	0, 0, 0, 0, 0, 0, 0, 0, // epoch 0, sequence 0
	0, 12, // record length: the handshake header only
	1,         // ClientHello
	0, 0, 200, // message length 200
	0, 0, // message_seq 0
	0, 0, 0, // fragment offset 0
	0, 0, 0, // fragment length 0
}

// TestZeroLengthFragmentsDoNotSpin (CVE-2022-29190: pion/dtls before 2.1.4
// looped forever on a zero-length fragment): a leg's server handshake fed
// nothing but zero-length fragments gives up at its deadline, and leaves no
// goroutine behind (a spinning one would stay). pion assembles a message
// from the length its first fragment declares, so a forged fragment that
// arrives before the real ClientHello stalls that handshake until its
// deadline: the node delivers DTLS only from an address that passed an ICE
// check (relay: TestDTLSFromUncheckedAddressesNeverReachesTheLeg; the
// ClientHello race attack test), which no stranger has.
func TestZeroLengthFragmentsDoNotSpin(t *testing.T) {
	before := runtime.NumGoroutine()
	sc, _ := cert(t)
	_, cfp := cert(t)
	st, _ := pipe()
	start := time.Now()
	server := run(st, Config{Certificate: sc, Role: Server, RemoteAlgorithm: "sha-256", RemoteFingerprint: cfp, Timeout: time.Second})
	for i := 0; i < 200; i++ {
		st.Deliver(zeroLengthFragment)
	}
	select {
	case o := <-server:
		if o.err == nil {
			t.Fatal("a handshake completed on zero-length fragments")
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the handshake did not return %v after its 1 s deadline", time.Since(start))
	}
	st.Close()
	waitGoroutines(t, before)
}

// TestCertificateWithoutItsKeyIsRefused (CVE-2022-29222): a peer that
// presents the certificate the SDP pinned but does not hold its private key
// (it signs with another) must fail the handshake, whichever role Strait
// has: the fingerprint authenticates only with proof of possession
// (CertificateVerify from a client, the signed key exchange from a server).
func TestCertificateWithoutItsKeyIsRefused(t *testing.T) {
	victim, victimFP := cert(t)
	attackerKey, _ := cert(t)
	forged := tls.Certificate{Certificate: victim.Certificate, PrivateKey: attackerKey.PrivateKey}
	for _, strait := range []Role{Server, Client} {
		t.Run(strait.String(), func(t *testing.T) {
			sc, sfp := cert(t)
			st, pt := pipe()
			defer st.Close()
			defer pt.Close()
			peerRole := Client
			if strait == Client {
				peerRole = Server
			}
			ours := run(st, Config{Certificate: sc, Role: strait, RemoteAlgorithm: "sha-256", RemoteFingerprint: victimFP, Timeout: 5 * time.Second})
			theirs := run(pt, Config{Certificate: forged, Role: peerRole, RemoteAlgorithm: "sha-256", RemoteFingerprint: sfp, Timeout: 5 * time.Second})
			o := <-ours
			pt.Close()
			<-theirs
			if o.err == nil {
				o.res.Conn.Close()
				t.Fatal("a peer without the pinned certificate's key completed the handshake")
			}
		})
	}
}

// TestClientWithoutCertificateIsRefused: Strait as the DTLS server requires
// a client certificate (the fingerprint is the browser's only
// authentication, RFC 8827 section 6.5): a client that sends none, and so
// no CertificateVerify, fails.
func TestClientWithoutCertificateIsRefused(t *testing.T) {
	sc, sfp := cert(t)
	_ = sfp
	st, pt := pipe()
	defer st.Close()
	defer pt.Close()
	_, anyFP := cert(t)
	ours := run(st, Config{Certificate: sc, Role: Server, RemoteAlgorithm: "sha-256", RemoteFingerprint: anyFP, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := dtls.ClientWithOptions(pt, pt.RemoteAddr(), dtls.WithInsecureSkipVerify(true),
			dtls.WithSRTPProtectionProfiles(Profiles...), dtls.WithLoggerFactory(quietLogs))
		if err == nil {
			err = conn.HandshakeContext(ctx)
			conn.Close()
		}
		done <- err
	}()
	if o := <-ours; o.err == nil {
		o.res.Conn.Close()
		t.Fatal("a client without a certificate completed the handshake")
	}
	pt.Close()
	<-done
}

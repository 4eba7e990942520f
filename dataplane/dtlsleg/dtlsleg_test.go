package dtlsleg

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func cert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	c, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp
}

// pipe returns two Transports whose writes are delivered to each other, as
// two legs' workers would.
func pipe() (a, b *Transport) {
	aAddr := netip.MustParseAddrPort("127.0.0.1:1000")
	bAddr := netip.MustParseAddrPort("127.0.0.1:2000")
	a = NewTransport(aAddr, bAddr, func(p []byte) error { b.Deliver(p); return nil })
	b = NewTransport(bAddr, aAddr, func(p []byte) error { a.Deliver(p); return nil })
	return a, b
}

type outcome struct {
	res *Result
	err error
}

func run(t *Transport, cfg Config) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		r, err := Handshake(context.Background(), t, cfg)
		ch <- outcome{r, err}
	}()
	return ch
}

func TestHandshakeDerivesMatchingKeys(t *testing.T) {
	for _, lower := range []bool{false, true} {
		cc, cfp := cert(t)
		sc, sfp := cert(t)
		if lower { // browsers write SDP fingerprints in upper case
			cfp = toUpper(cfp)
		}
		ct, st := pipe()
		defer ct.Close()
		defer st.Close()
		client := run(ct, Config{Certificate: cc, Role: Client, RemoteAlgorithm: "sha-256", RemoteFingerprint: sfp})
		server := run(st, Config{Certificate: sc, Role: Server, RemoteAlgorithm: "SHA-256", RemoteFingerprint: cfp})
		c, s := <-client, <-server
		if c.err != nil || s.err != nil {
			t.Fatalf("client: %v, server: %v", c.err, s.err)
		}
		if c.res.SRTP.Profile != srtp.ProtectionProfileAeadAes128Gcm {
			t.Errorf("profile %v, want AEAD_AES_128_GCM first", ProfileName(c.res.SRTP.Profile))
		}
		// What the client encrypts with its local keys the server decrypts
		// with its remote keys.
		ck, sk := c.res.SRTP.Keys, s.res.SRTP.Keys
		enc, err := srtp.CreateContext(ck.LocalMasterKey, ck.LocalMasterSalt, c.res.SRTP.Profile)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := srtp.CreateContext(sk.RemoteMasterKey, sk.RemoteMasterSalt, s.res.SRTP.Profile)
		if err != nil {
			t.Fatal(err)
		}
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 7}, Payload: []byte("hello")}).Marshal()
		ct2, err := enc.EncryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := dec.DecryptRTP(nil, ct2, nil)
		if err != nil || string(pt[12:]) != "hello" {
			t.Fatalf("decrypt: %q, %v", pt, err)
		}
		c.res.Conn.Close()
		s.res.Conn.Close()
	}
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func TestWrongFingerprintFails(t *testing.T) {
	cc, _ := cert(t)
	sc, sfp := cert(t)
	_, otherFP := cert(t)
	ct, st := pipe()
	defer ct.Close()
	defer st.Close()
	// The server expects a different client certificate.
	client := run(ct, Config{Certificate: cc, Role: Client, RemoteAlgorithm: "sha-256", RemoteFingerprint: sfp, Timeout: 5 * time.Second})
	server := run(st, Config{Certificate: sc, Role: Server, RemoteAlgorithm: "sha-256", RemoteFingerprint: otherFP, Timeout: 5 * time.Second})
	s := <-server
	if !errors.Is(s.err, ErrFingerprintMismatch) {
		t.Fatalf("server: %v, want ErrFingerprintMismatch", s.err)
	}
	if c := <-client; c.err == nil {
		t.Fatal("client handshake succeeded against a server that rejected it")
	}
}

func TestHandshakeTimesOutAndReturns(t *testing.T) {
	before := runtime.NumGoroutine()
	sc, _ := cert(t)
	_, fp := cert(t)
	tr := NewTransport(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"), func([]byte) error { return nil })
	start := time.Now()
	_, err := Handshake(context.Background(), tr, Config{Certificate: sc, Role: Server, RemoteAlgorithm: "sha-256", RemoteFingerprint: fp, Timeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("handshake with nobody succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout of 300ms took %v", time.Since(start))
	}
	tr.Close()
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > want {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, want <= %d:\n%s", n, want, buf[:runtime.Stack(buf, true)])
	}
}

func TestDeliverDropsWhenFullOrClosed(t *testing.T) {
	tr := NewTransport(netip.AddrPort{}, netip.AddrPort{}, func([]byte) error { return nil })
	for i := 0; i < QueueLen; i++ {
		if !tr.Deliver([]byte{22, 1}) {
			t.Fatalf("Deliver %d refused below QueueLen", i)
		}
	}
	if tr.Deliver([]byte{22}) {
		t.Fatal("Deliver accepted beyond QueueLen")
	}
	if tr.Deliver(make([]byte, maxDatagram+1)) {
		t.Fatal("Deliver accepted an oversized datagram")
	}
	tr.Close()
	if tr.Deliver([]byte{22}) {
		t.Fatal("Deliver accepted after Close")
	}
	if _, _, err := tr.ReadFrom(make([]byte, 10)); !IsClosed(err) {
		t.Fatalf("ReadFrom after Close: %v", err)
	}
}

func TestReadDeadline(t *testing.T) {
	tr := NewTransport(netip.AddrPort{}, netip.AddrPort{}, func([]byte) error { return nil })
	defer tr.Close()
	tr.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := tr.ReadFrom(make([]byte, 10)); err == nil {
		t.Fatal("ReadFrom returned without data before the deadline")
	}
}

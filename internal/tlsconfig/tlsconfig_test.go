package tlsconfig

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"
)

// handshake connects client to server and reports whether the client
// could read a byte the server sends once its handshake succeeded (with
// TLS 1.3 a client learns of a rejected certificate only when it reads).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	go func() {
		s := tls.Server(a, server)
		if err := s.Handshake(); err != nil {
			a.Close()
			return
		}
		s.Write([]byte{1})
	}()
	c := tls.Client(b, client)
	if err := c.Handshake(); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 1))
	return err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p, err := GeneratePKI(dir, []string{"127.0.0.1", "node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	client, err := Client(p.ClientCert, p.ClientKey, p.CA, "node1.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, server, client); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	anonymous, _ := Client("", "", p.CA, "node1.example")
	if err := handshake(t, server, anonymous); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	other, _ := GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
	stranger, _ := Client(other.ClientCert, other.ClientKey, p.CA, "node1.example")
	if err := handshake(t, server, stranger); err == nil {
		t.Fatal("a client certificate from another CA got in")
	}
	if _, err := Server(p.ServerCert, p.ServerKey, dir+"/missing.pem"); err == nil {
		t.Fatal("missing CA accepted")
	}
}

// Only TLS 1.3, and TLS 1.2 with ECDHE and an AEAD, get through: a
// client that offers only CBC suites (or static RSA, or TLS 1.1) is
// refused.
func TestModernSuitesOnly(t *testing.T) {
	p, err := GeneratePKI(t.TempDir(), []string{"127.0.0.1", "node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(p.ServerCert, p.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := Client("", "", p.CA, "node1.example")
	for _, tc := range []struct {
		name     string
		min, max uint16
		suites   []uint16
		ok       bool
	}{
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
		{"TLS 1.2 ECDHE-ECDSA-AES128-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, true},
		{"TLS 1.2 ECDHE-ECDSA-CHACHA20", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, true},
		{"TLS 1.2 CBC-SHA only", tls.VersionTLS12, tls.VersionTLS12, []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA}, false},
		{"TLS 1.2 ECDHE-ECDSA-AES128-CBC-SHA256", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}, false},
		{"TLS 1.2 static RSA GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, nil, false},
	} {
		c := base.Clone()
		c.MinVersion, c.MaxVersion, c.CipherSuites = tc.min, tc.max, tc.suites
		err := handshake(t, server, c)
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake error %v, want success %v", tc.name, err, tc.ok)
		}
	}
	for _, s := range CipherSuites {
		for _, bad := range tls.InsecureCipherSuites() {
			if s == bad.ID {
				t.Errorf("%s is offered", bad.Name)
			}
		}
	}
}

// A certificate rewritten on disk and reloaded is what the next
// handshake presents; a bad file leaves the old one in use.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	p, err := GeneratePKI(dir, []string{"node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadCertificate(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	server, _ := NewServer(cert, "")
	seen := func() string {
		t.Helper()
		var serial string
		c, _ := Client("", "", p.CA, "node1.example")
		c.InsecureSkipVerify = true // the new certificate has another CA
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}
		if err := handshake(t, server, c); err != nil {
			t.Fatal(err)
		}
		return serial
	}
	first := seen()
	if first != cert.Leaf().SerialNumber.String() {
		t.Fatalf("presented %s, loaded %s", first, cert.Leaf().SerialNumber)
	}
	q, err := GeneratePKI(t.TempDir(), []string{"node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{q.ServerCert, p.ServerCert}, {q.ServerKey, p.ServerKey}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	second := seen()
	if second == first {
		t.Fatal("still the old certificate after Reload")
	}
	os.WriteFile(p.ServerKey, []byte("not a key"), 0o600)
	if err := cert.Reload(); err == nil {
		t.Fatal("a broken key reloaded")
	}
	if seen() != second {
		t.Fatal("a failed reload changed the certificate")
	}
}

package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrNoPeerCertificate is a TLS peer that showed no certificate.
var ErrNoPeerCertificate = errors.New("upstream: the TLS peer showed no certificate")

// VerifyPeer checks that a TLS connection's peer is the upstream named
// host (RFC 5922 section 7.3: the name from the configured URI, not from
// DNS): its certificate chains to roots (the system's when nil) and
// carries host as a DNS name, or as an IP address when host is one. It
// works alike for connections Strait opened (the upstream's server
// certificate) and ones the upstream opened to Strait's TLS listener
// (its client certificate, which Strait asks for but crypto/tls does not
// verify: a PBX often presents its server certificate, without the
// clientAuth usage).
func VerifyPeer(st tls.ConnectionState, host string, roots *x509.CertPool) error {
	if len(st.PeerCertificates) == 0 {
		return ErrNoPeerCertificate
	}
	leaf := st.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: time.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("upstream %s: certificate not trusted: %w", host, err)
	}
	name := host
	if a, err := netip.ParseAddr(host); err == nil {
		name = a.Unmap().String()
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return fmt.Errorf("upstream %s: %w", host, err)
	}
	return nil
}

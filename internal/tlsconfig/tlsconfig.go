// Package tlsconfig builds every TLS configuration Strait uses, in one
// place: server TLS for the HTTP/WebSocket and SIP listeners, and mutual
// TLS between a control plane and remote dataplane nodes (nobody else may
// program a media relay). All of them offer only modern protocol versions
// and suites (see [Harden]), and take their certificate from a
// [Certificate] that can be reread from disk while connections are up
// (SIGHUP), so that a renewed certificate needs no restart.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// CipherSuites are the TLS 1.2 suites Strait offers and accepts: ECDHE
// key exchange (forward secrecy) with an AEAD cipher only, as in
// Mozilla's "intermediate" profile and RFC 9325 section 4.2. No CBC-SHA
// (Lucky Thirteen, and no AEAD), no static RSA key exchange (no forward
// secrecy). TLS 1.3's suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Harden restricts c to TLS 1.2 with CipherSuites and TLS 1.3.
func Harden(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = append([]uint16(nil), CipherSuites...)
}

// Certificate is a certificate chain and key read from two PEM files.
// Reload rereads them; handshakes that start afterwards present the new
// certificate, connections already up keep theirs. It is safe for
// concurrent use.
type Certificate struct {
	certFile, keyFile string // frozen after LoadCertificate
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a certificate and its key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload rereads the files. On error the certificate in use stays.
func (c *Certificate) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: certificate %s: %w", c.certFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// Leaf returns the certificate in use, parsed.
func (c *Certificate) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

func (c *Certificate) serverCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

func (c *Certificate) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// NewServer returns a server configuration presenting cert. With
// clientCAFile set, clients must present a certificate signed by one of
// its CAs (mutual TLS).
func NewServer(cert *Certificate, clientCAFile string) (*tls.Config, error) {
	c := &tls.Config{GetCertificate: cert.serverCert}
	Harden(c)
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// NewClient returns a client configuration that verifies the server
// against the CAs in caFile (the system roots when empty) and, with cert
// set, presents it (mutual TLS).
func NewClient(cert *Certificate, caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{ServerName: serverName}
	Harden(c)
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if cert != nil {
		c.GetClientCertificate = cert.clientCert
	}
	return c, nil
}

// Server returns a server configuration with the certificate in
// certFile/keyFile (not reloadable: see NewServer). With clientCAFile
// set, clients must present a certificate signed by one of its CAs.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return NewServer(cert, clientCAFile)
}

// Client returns a client configuration that verifies the server against
// the CAs in caFile (the system roots when empty) and, with certFile and
// keyFile set, presents that certificate (mutual TLS).
func Client(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	var cert *Certificate
	if certFile != "" || keyFile != "" {
		var err error
		if cert, err = LoadCertificate(certFile, keyFile); err != nil {
			return nil, err
		}
	}
	return NewClient(cert, caFile, serverName)
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("tls: no PEM certificate in " + file)
	}
	return pool, nil
}

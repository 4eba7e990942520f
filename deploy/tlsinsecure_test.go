package deploy

import "crypto/tls"

// insecureTLS accepts the self-signed certificate of a binary the test
// started itself on loopback.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // test-only, loopback

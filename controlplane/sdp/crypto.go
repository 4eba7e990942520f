package sdp

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Crypto is one SDES a=crypto line (RFC 4568 section 9.1) with its first
// inline key.
type Crypto struct {
	// Tag identifies the line; an answer echoes the tag of the offered line
	// it accepts.
	Tag int
	// Suite is the crypto suite name, e.g. "AES_CM_128_HMAC_SHA1_80".
	Suite string
	// Key is the master key followed by the master salt, base64-decoded.
	Key []byte
	// Lifetime is the master key lifetime in packets; 0 when not given.
	Lifetime uint64
	// MKI and MKILength are the master key identifier and its length in
	// bytes; MKILength is 0 when the line has no MKI.
	MKI       uint64
	MKILength int
	// Params are the session parameters, as written (e.g. "KDR=1").
	Params []string
}

// DefaultCryptoSuite is the suite Strait offers on RTP/SAVP: the one every
// SDES implementation has (RFC 4568 section 6.2.1).
const DefaultCryptoSuite = "AES_CM_128_HMAC_SHA1_80"

// cryptoKeySizes are master key plus salt lengths in bytes of the suites
// RFC 4568, RFC 6188 and RFC 7714 define, plus the names FreeSWITCH and
// Asterisk use for some of them, so that a truncated key is caught at parse
// time.
var cryptoKeySizes = map[string]int{
	"AES_CM_128_HMAC_SHA1_80": 30,
	"AES_CM_128_HMAC_SHA1_32": 30,
	"F8_128_HMAC_SHA1_80":     30,
	"AES_192_CM_HMAC_SHA1_80": 38,
	"AES_192_CM_HMAC_SHA1_32": 38,
	"AES_256_CM_HMAC_SHA1_80": 46,
	"AES_256_CM_HMAC_SHA1_32": 46,
	"AES_CM_192_HMAC_SHA1_80": 38,
	"AES_CM_256_HMAC_SHA1_80": 46,
	"AEAD_AES_128_GCM":        28,
	"AEAD_AES_256_GCM":        44,
	"AEAD_AES_128_GCM_8":      28,
	"AEAD_AES_256_GCM_8":      44,
}

// dataplaneSuites are the suites the dataplane implements (its SDESCrypto
// message), in Strait's order of preference when it offers.
var dataplaneSuites = []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"}

// Supported reports whether the dataplane can use this line: a suite it
// implements, no MKI and no session parameters (which would change the key
// derivation or leave parts unencrypted, RFC 4568 section 6.3).
func (c Crypto) Supported() bool {
	for _, s := range dataplaneSuites {
		if c.Suite == s {
			return c.MKILength == 0 && len(c.Params) == 0 && len(c.Key) == cryptoKeySizes[s]
		}
	}
	return false
}

// SelectCrypto returns the first line of the offered ones the dataplane
// supports, in the offerer's order of preference (RFC 4568 section 7.1.1).
func SelectCrypto(offered []Crypto) (Crypto, bool) {
	for _, c := range offered {
		if c.Supported() {
			return c, true
		}
	}
	return Crypto{}, false
}

// String returns the attribute value (without "crypto:").
func (c Crypto) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s inline:%s", c.Tag, c.Suite, base64.StdEncoding.EncodeToString(c.Key))
	if c.Lifetime != 0 {
		fmt.Fprintf(&b, "|%d", c.Lifetime)
	}
	if c.MKILength != 0 {
		fmt.Fprintf(&b, "|%d:%d", c.MKI, c.MKILength)
	}
	for _, p := range c.Params {
		b.WriteString(" " + p)
	}
	return b.String()
}

// maxCryptoTag is the largest tag RFC 4568 section 9.1 allows (1*9DIGIT).
const maxCryptoTag = 999999999

// parseCrypto reads the value of a=crypto:
//
//	tag suite inline:key||salt[|lifetime][|mki:length][;inline:...] [params...]
func parseCrypto(v string) (Crypto, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return Crypto{}, fmt.Errorf("crypto %q: want tag, suite and key", v)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > maxCryptoTag {
		return Crypto{}, fmt.Errorf("crypto %q: bad tag", v)
	}
	c := Crypto{Tag: tag, Suite: f[1], Params: f[3:]}
	if len(c.Params) == 0 {
		c.Params = nil
	}
	// Several keys may follow, separated by ';'; Strait uses the first.
	first, _, _ := strings.Cut(f[2], ";")
	info, ok := strings.CutPrefix(first, "inline:")
	if !ok {
		return Crypto{}, fmt.Errorf("crypto %q: key method is not inline", v)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return Crypto{}, fmt.Errorf("crypto %q: too many key fields", v)
	}
	if c.Key, err = decodeKey(parts[0]); err != nil {
		return Crypto{}, fmt.Errorf("crypto %q: key: %v", v, err)
	}
	if n, ok := cryptoKeySizes[c.Suite]; ok && len(c.Key) != n {
		return Crypto{}, fmt.Errorf("crypto %q: %d key bytes, %s wants %d", v, len(c.Key), c.Suite, n)
	}
	for _, p := range parts[1:] {
		if mki, length, isMKI := strings.Cut(p, ":"); isMKI {
			if c.MKI, err = strconv.ParseUint(mki, 10, 64); err != nil {
				return Crypto{}, fmt.Errorf("crypto %q: bad MKI", v)
			}
			if c.MKILength, err = strconv.Atoi(length); err != nil || c.MKILength < 1 || c.MKILength > 128 {
				return Crypto{}, fmt.Errorf("crypto %q: bad MKI length", v)
			}
			continue
		}
		if c.Lifetime, err = parseLifetime(p); err != nil {
			return Crypto{}, fmt.Errorf("crypto %q: %v", v, err)
		}
	}
	return c, nil
}

// decodeKey accepts base64 with or without padding: RFC 4568 wants padding,
// some implementations leave it out.
func decodeKey(s string) ([]byte, error) {
	if k, err := base64.StdEncoding.DecodeString(s); err == nil {
		return k, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// parseLifetime reads a key lifetime, decimal or "2^n".
func parseLifetime(s string) (uint64, error) {
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.ParseUint(exp, 10, 8)
		if err != nil || n > 63 {
			return 0, fmt.Errorf("bad lifetime %q", s)
		}
		return 1 << n, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("bad lifetime %q", s)
	}
	return n, nil
}

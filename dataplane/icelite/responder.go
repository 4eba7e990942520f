package icelite

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"hash"
	"net/netip"
	"slices"

	"github.com/pion/stun/v4"
)

// MaxResponseSize is the most bytes AppendSuccess appends: the 20-byte
// header, XOR-MAPPED-ADDRESS (4+8 bytes for IPv4, 4+20 for IPv6),
// MESSAGE-INTEGRITY (4+20) and FINGERPRINT (4+4). An IPv4 response is 64
// bytes.
const MaxResponseSize = 76

// Responder verifies Binding requests and writes Binding success responses.
// It holds the SHA-1 state and scratch space these reuse, so that they do not
// allocate per packet.
//
// A Responder is not safe for concurrent use: give each packet worker
// goroutine its own, and do not copy one after first use (copies share the
// hash state). The zero value is ready to use; its first call allocates the
// hash state.
//
// Responder computes HMAC-SHA1 from crypto/sha1 itself rather than with
// crypto/hmac or pion/stun: crypto/hmac.New allocates per key, and the key
// changes from one packet to the next (one per leg); pion/stun rekeys a
// pooled HMAC per call and appends its Sum to the message buffer (see the
// package documentation). Sums go to scratch space in the Responder.
type Responder struct {
	h     hash.Hash                  // crypto/sha1
	state encoding.BinaryUnmarshaler // h, to restore a Key's pad states
	hdr   [headerSize]byte           // request header with its length adjusted
	sum   [sha1.Size]byte            // inner and outer HMAC sums
}

// init sets up x on first use and reports whether it is usable: a sha1
// implementation that cannot restore state (none in the standard library)
// makes every MAC fail rather than panic.
func (x *Responder) init() bool {
	if x.h == nil {
		x.h = sha1.New()
		x.state, _ = x.h.(encoding.BinaryUnmarshaler)
	}
	return x.state != nil
}

// mac returns HMAC-SHA1 under k of a followed by b (RFC 2104), in x.sum.
// It reports false if k is not usable.
func (x *Responder) mac(k *Key, a, b []byte) ([]byte, bool) {
	if k == nil || !x.init() || x.state.UnmarshalBinary(k.inner) != nil {
		return nil, false
	}
	x.h.Write(a)
	x.h.Write(b)
	inner := x.h.Sum(x.sum[:0])
	if x.state.UnmarshalBinary(k.outer) != nil {
		return nil, false
	}
	x.h.Write(inner)
	return x.h.Sum(x.sum[:0]), true
}

// Verify reports whether the MESSAGE-INTEGRITY of pkt, the datagram that
// ParseRequest parsed into r, is valid under key, the local password of the
// leg that r.LocalUfrag names (RFC 8445 section 7.3, short-term credentials).
//
// Per RFC 5389 section 15.4, the HMAC covers the message up to the
// MESSAGE-INTEGRITY attribute, with the header length field counting the
// attributes up to and including MESSAGE-INTEGRITY but not the FINGERPRINT
// that follows it. Verify hashes a copy of the header, so pkt is not
// modified. The comparison takes constant time.
//
// Verify reports false for a nil or zero key, a zero r, or a pkt that is
// not the one r was parsed from (as far as the lengths show). It does not
// allocate.
func (x *Responder) Verify(pkt []byte, r *Request, key *Key) bool {
	at := r.integrityAt
	if at < headerSize || at+attrHeaderSize+integritySize > len(pkt) {
		return false
	}
	copy(x.hdr[:], pkt[:headerSize])
	binary.BigEndian.PutUint16(x.hdr[2:4], uint16(at+attrHeaderSize+integritySize-headerSize))
	sum, ok := x.mac(key, x.hdr[:], pkt[headerSize:at])
	if !ok {
		return false
	}
	got := pkt[at+attrHeaderSize : at+attrHeaderSize+integritySize]
	return subtle.ConstantTimeCompare(sum, got) == 1
}

// AppendSuccess appends to dst the Binding success response to r (RFC 8445
// section 7.3, RFC 5389 section 10.1.2) and returns the extended slice: the
// header with r's transaction ID, XOR-MAPPED-ADDRESS with mapped, the
// source address and port the request came from (RFC 8445 section 7.3.1.2,
// RFC 5389 section 15.2; an IPv4-mapped IPv6 address is sent as IPv4, and a
// zone is dropped), MESSAGE-INTEGRITY
// under key, the same local password that verified the request
// (RFC 5389 section 15.4), and FINGERPRINT (section 15.5).
//
// The response is at most MaxResponseSize bytes. AppendSuccess does not
// allocate when cap(dst)-len(dst) is at least that; otherwise it grows dst
// as append does. dst may share memory with the request datagram, so a
// response can be written over its request: AppendSuccess reads only
// r.TransactionID, which is a copy.
//
// On error, which wraps ErrBadAddress (mapped has no valid address) or
// ErrBadPassword (key is nil or zero), AppendSuccess returns dst unchanged.
func (x *Responder) AppendSuccess(dst []byte, r *Request, mapped netip.AddrPort, key *Key) ([]byte, error) {
	ip := mapped.Addr().Unmap()
	if !ip.IsValid() {
		return dst, &addressError{addr: mapped}
	}
	if key == nil || key.inner == nil {
		return dst, errZeroKey
	}
	family, addrLen := byte(1), 4 // RFC 5389 section 15.1
	if ip.Is6() {
		family, addrLen = 2, 16
	}
	mappedAt := headerSize
	integrityAt := mappedAt + attrHeaderSize + 4 + addrLen
	fingerprintAt := integrityAt + attrHeaderSize + integritySize
	size := fingerprintAt + attrHeaderSize + fingerprintLen

	orig, start := dst, len(dst)
	dst = slices.Grow(dst, size)[:start+size]
	b := dst[start:]

	// Header (RFC 5389 section 6). The length first ends at
	// MESSAGE-INTEGRITY, as its HMAC requires (section 15.4).
	binary.BigEndian.PutUint16(b[0:], typeBindingSuccess)
	binary.BigEndian.PutUint16(b[2:], uint16(fingerprintAt-headerSize))
	binary.BigEndian.PutUint32(b[4:], magicCookie)
	copy(b[8:headerSize], r.TransactionID[:])

	// XOR-MAPPED-ADDRESS (section 15.2): the port XORed with the top half
	// of the magic cookie, the address with the cookie followed by the
	// transaction ID, which is b[4:20].
	a := b[mappedAt:]
	binary.BigEndian.PutUint16(a[0:], uint16(stun.AttrXORMappedAddress))
	binary.BigEndian.PutUint16(a[2:], uint16(4+addrLen))
	a[4], a[5] = 0, family
	binary.BigEndian.PutUint16(a[6:], mapped.Port()^magicCookie>>16)
	ip16 := ip.As16()
	ipb := ip16[16-addrLen:] // As4 is the last 4 bytes of As16
	for i := range addrLen {
		a[8+i] = ipb[i] ^ b[4+i]
	}

	// MESSAGE-INTEGRITY (section 15.4).
	binary.BigEndian.PutUint16(b[integrityAt:], uint16(stun.AttrMessageIntegrity))
	binary.BigEndian.PutUint16(b[integrityAt+2:], integritySize)
	sum, ok := x.mac(key, b[:integrityAt], nil)
	if !ok {
		return orig, errNoSHA1State // NewKey would have failed first
	}
	copy(b[integrityAt+attrHeaderSize:], sum)

	// FINGERPRINT (section 15.5), over everything before it with the
	// length now counting it.
	binary.BigEndian.PutUint16(b[2:], uint16(size-headerSize))
	binary.BigEndian.PutUint16(b[fingerprintAt:], uint16(stun.AttrFingerprint))
	binary.BigEndian.PutUint16(b[fingerprintAt+2:], fingerprintLen)
	binary.BigEndian.PutUint32(b[fingerprintAt+4:], stun.FingerprintValue(b[:fingerprintAt]))
	return dst, nil
}

package icelite

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors. Match them with errors.Is: the errors returned wrap them
// with a more specific description.
var (
	// ErrNotSTUN means the datagram is not a STUN message (RFC 5389
	// section 6): shorter than the 20-byte header, the two most significant
	// bits of the type are not zero, or the magic cookie is wrong.
	ErrNotSTUN = errors.New("icelite: not a STUN message")

	// ErrNotBindingRequest means the datagram has a valid STUN header but is
	// not a Binding request: a response, an indication (RFC 8445 section 11
	// keepalives are Binding indications) or another method. Callers
	// typically drop it and count it apart from malformed requests.
	ErrNotBindingRequest = errors.New("icelite: STUN message is not a Binding request")

	// ErrMalformed means a Binding request breaks the message or attribute
	// structure of RFC 5389 sections 6 and 15 or lacks an attribute ICE
	// requires (RFC 8445 section 7.2.2).
	ErrMalformed = errors.New("icelite: malformed Binding request")

	// ErrFingerprintMismatch means the FINGERPRINT attribute does not match
	// the message (RFC 5389 section 15.5): a corrupted datagram, or one of
	// another protocol that happens to look like STUN.
	ErrFingerprintMismatch = errors.New("icelite: FINGERPRINT mismatch")

	// ErrUnknownAttribute means an otherwise well-formed Binding request
	// carries a comprehension-required attribute (type below 0x8000) that an
	// ICE-lite agent does not understand. RFC 5389 section 7.3.1 forbids
	// processing such a request.
	ErrUnknownAttribute = errors.New("icelite: unknown comprehension-required attribute")

	// ErrBadPassword means a password is not a valid ICE password, or a Key
	// was used that NewKey did not make.
	ErrBadPassword = errors.New("icelite: bad ICE password")

	// ErrBadAddress means the mapped address given for a response is not a
	// valid IP address.
	ErrBadAddress = errors.New("icelite: bad mapped address")
)

// Errors returned by ParseRequest. They are fixed values rather than errors
// carrying the offending bytes, because ParseRequest runs on every STUN
// datagram a socket receives, and a peer sending garbage at line rate must
// not make the dataplane allocate.
var (
	errShort          = fmt.Errorf("%w: shorter than the 20-byte header", ErrNotSTUN)
	errTypeBits       = fmt.Errorf("%w: the two most significant bits of the type are not zero", ErrNotSTUN)
	errCookie         = fmt.Errorf("%w: wrong magic cookie", ErrNotSTUN)
	errLength         = fmt.Errorf("%w: header length does not match the datagram size", ErrMalformed)
	errLengthAlign    = fmt.Errorf("%w: header length is not a multiple of 4", ErrMalformed)
	errAttrOverrun    = fmt.Errorf("%w: attribute runs past the end of the message", ErrMalformed)
	errAttrLength     = fmt.Errorf("%w: attribute has the wrong length for its type", ErrMalformed)
	errAfterIntegrity = fmt.Errorf("%w: attribute other than FINGERPRINT after MESSAGE-INTEGRITY", ErrMalformed)
	errFingerprintPos = fmt.Errorf("%w: FINGERPRINT is not the last attribute", ErrMalformed)
	errNoFingerprint  = fmt.Errorf("%w: no FINGERPRINT", ErrMalformed)
	errNoIntegrity    = fmt.Errorf("%w: no MESSAGE-INTEGRITY", ErrMalformed)
	errNoUsername     = fmt.Errorf("%w: no USERNAME", ErrMalformed)
	errUsername       = fmt.Errorf("%w: USERNAME is not \"local:remote\" ufrags", ErrMalformed)
	errTwoRoles       = fmt.Errorf("%w: more than one ICE-CONTROLLING/ICE-CONTROLLED attribute", ErrMalformed)
	errFingerprint    = fmt.Errorf("%w: CRC-32 does not match", ErrFingerprintMismatch)
	errUnknownAttr    = fmt.Errorf("%w: see RFC 5389 section 7.3.1", ErrUnknownAttribute)
	errZeroKey        = fmt.Errorf("%w: nil or zero Key", ErrBadPassword)
)

// errNoSHA1State means crypto/sha1 cannot marshal its state, which no
// standard library build lacks; NewKey fails rather than Verify panicking.
var errNoSHA1State = errors.New("icelite: crypto/sha1 cannot marshal its state")

// passwordError reports why NewKey rejected a password. It carries the
// offending length or byte offset but never the password itself, so that it
// can be logged.
type passwordError struct {
	length int // length of the password in bytes
	at     int // offset of the first byte that is not an ice-char, or -1
}

func (e *passwordError) Error() string {
	if e.at >= 0 {
		return fmt.Sprintf("%v: byte %d is not an ice-char (ALPHA / DIGIT / \"+\" / \"/\")", ErrBadPassword, e.at)
	}
	return fmt.Sprintf("%v: %d bytes, want %d to %d", ErrBadPassword, e.length, minPasswordLen, maxPasswordLen)
}

func (e *passwordError) Unwrap() error { return ErrBadPassword }

// addressError reports the mapped address AppendSuccess could not encode.
type addressError struct {
	addr netip.AddrPort
}

func (e *addressError) Error() string {
	return fmt.Sprintf("%v: %v", ErrBadAddress, e.addr)
}

func (e *addressError) Unwrap() error { return ErrBadAddress }

package icelite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// The helpers below build STUN messages byte by byte and compute
// MESSAGE-INTEGRITY with crypto/hmac and FINGERPRINT with hash/crc32, so the
// tests do not trust the code under test to build what it checks.

const (
	testPassword = "asd88fgpdd777uzjYhagZg" // 22 ice-chars, the minimum
	testUsername = "Strt:brws"
)

var testTxID = [12]byte{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

type attr struct {
	typ uint16
	val []byte
}

// message returns a STUN message of type typ with attrs, each padded to 4
// bytes with pad bytes 0x20 (RFC 5769 uses spaces too), and the header
// length counting them.
func message(typ uint16, attrs ...attr) []byte {
	b := make([]byte, headerSize, 256)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], magicCookie)
	copy(b[8:], testTxID[:])
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.val)))
		b = append(b, a.val...)
		for len(b)%4 != 0 {
			b = append(b, 0x20)
		}
	}
	setLength(b, len(b)-headerSize)
	return b
}

func setLength(b []byte, n int) { binary.BigEndian.PutUint16(b[2:], uint16(n)) }

// withIntegrity appends MESSAGE-INTEGRITY under pwd (RFC 5389 section 15.4).
func withIntegrity(b []byte, pwd string) []byte {
	setLength(b, len(b)-headerSize+24)
	m := hmac.New(sha1.New, []byte(pwd))
	m.Write(b)
	b = binary.BigEndian.AppendUint16(b, 0x0008)
	b = binary.BigEndian.AppendUint16(b, 20)
	return m.Sum(b)
}

// withFingerprint appends FINGERPRINT (RFC 5389 section 15.5).
func withFingerprint(b []byte) []byte {
	setLength(b, len(b)-headerSize+8)
	crc := crc32.ChecksumIEEE(b) ^ 0x5354554e
	b = binary.BigEndian.AppendUint16(b, 0x8028)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, crc)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

var (
	aUser        = attr{0x0006, []byte(testUsername)}
	aPriority    = attr{0x0024, u32(1853817087)}
	aUseCand     = attr{0x0025, nil}
	aControlling = attr{0x802A, u64(0x1122334455667788)}
	aControlled  = attr{0x8029, u64(42)}
	aNetworkInfo = attr{0xC057, u32(0x00010005)} // Chrome's GOOG-NETWORK-INFO
)

// signed returns a Binding request with attrs, MESSAGE-INTEGRITY under
// testPassword and FINGERPRINT.
func signed(attrs ...attr) []byte {
	return withFingerprint(withIntegrity(message(typeBindingRequest, attrs...), testPassword))
}

// browserRequest is what Chrome sends when it nominates a pair.
func browserRequest() []byte {
	return signed(aUser, aNetworkInfo, aControlling, aUseCand, aPriority)
}

func TestParseRequestGood(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want Request
	}{
		{
			name: "minimal",
			pkt:  signed(aUser),
			want: Request{LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws")},
		},
		{
			name: "browser nomination",
			pkt:  browserRequest(),
			want: Request{
				LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws"),
				Priority: 1853817087, UseCandidate: true,
				Role: RoleControlling, Tiebreaker: 0x1122334455667788,
			},
		},
		{
			name: "controlled peer",
			pkt:  signed(aControlled, aUser),
			want: Request{
				LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws"),
				Role: RoleControlled, Tiebreaker: 42,
			},
		},
		{
			name: "padded username and long ufrags",
			pkt:  signed(attr{0x0006, []byte("0123456789abcdef:xyz+/")}),
			want: Request{LocalUfrag: []byte("0123456789abcdef"), RemoteUfrag: []byte("xyz+/")},
		},
		{
			name: "first username and priority count",
			pkt:  signed(aUser, attr{0x0006, []byte("other:one")}, aPriority, attr{0x0024, u32(7)}),
			want: Request{LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws"), Priority: 1853817087},
		},
		{
			name: "unknown optional attribute",
			pkt:  signed(attr{0x8022, []byte("SOFTWARE")}, aUser, attr{0xC001, u32(3)}),
			want: Request{LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws")},
		},
		{
			name: "zero priority",
			pkt:  signed(aUser, attr{0x0024, u32(0)}, attr{0x0024, u32(7)}),
			want: Request{LocalUfrag: []byte("Strt"), RemoteUfrag: []byte("brws")},
		},
		{
			name: "maximum username",
			pkt:  signed(attr{0x0006, []byte("L:" + strings.Repeat("r", 510))}),
			want: Request{LocalUfrag: []byte("L"), RemoteUfrag: []byte(strings.Repeat("r", 510))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.pkt)
			var r Request
			if err := ParseRequest(tt.pkt, &r); err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !bytes.Equal(tt.pkt, orig) {
				t.Error("ParseRequest modified the datagram")
			}
			if r.TransactionID != testTxID {
				t.Errorf("TransactionID = %x, want %x", r.TransactionID, testTxID)
			}
			if !bytes.Equal(r.LocalUfrag, tt.want.LocalUfrag) || !bytes.Equal(r.RemoteUfrag, tt.want.RemoteUfrag) {
				t.Errorf("ufrags = %q:%q, want %q:%q", r.LocalUfrag, r.RemoteUfrag, tt.want.LocalUfrag, tt.want.RemoteUfrag)
			}
			if r.Priority != tt.want.Priority || r.UseCandidate != tt.want.UseCandidate ||
				r.Role != tt.want.Role || r.Tiebreaker != tt.want.Tiebreaker {
				t.Errorf("got priority %d use-candidate %v role %v tiebreaker %#x, want %d %v %v %#x",
					r.Priority, r.UseCandidate, r.Role, r.Tiebreaker,
					tt.want.Priority, tt.want.UseCandidate, tt.want.Role, tt.want.Tiebreaker)
			}
			if cap(r.LocalUfrag) != len(r.LocalUfrag) || cap(r.RemoteUfrag) != len(r.RemoteUfrag) {
				t.Error("ufrag slices reach past USERNAME")
			}
			if key := mustKey(t, testPassword); !new(Responder).Verify(tt.pkt, &r, key) {
				t.Error("Verify rejects the request")
			}
		})
	}
}

func TestParseRequestBad(t *testing.T) {
	good := browserRequest()
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// An attribute after FINGERPRINT, with the length counting it.
	afterFP := append(bytes.Clone(good), 0x80, 0x22, 0, 0)
	setLength(afterFP, len(afterFP)-headerSize)

	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrNotSTUN},
		{"truncated header", good[:19], ErrNotSTUN},
		{"top type bits", edit(func(b []byte) []byte { b[0] |= 0x40; return b }), ErrNotSTUN},
		{"bad cookie", edit(func(b []byte) []byte { b[7]++; return b }), ErrNotSTUN},
		{"rfc 3489 header", append(make([]byte, 0, 20), 0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), ErrNotSTUN},
		{"binding success", withFingerprint(message(0x0101)), ErrNotBindingRequest},
		{"binding error", withFingerprint(message(0x0111)), ErrNotBindingRequest},
		{"binding indication", withFingerprint(message(0x0011)), ErrNotBindingRequest},
		{"allocate request", edit(func(b []byte) []byte { b[1] = 0x03; return b }), ErrNotBindingRequest},
		{"header only", message(typeBindingRequest), ErrMalformed},
		{"truncated datagram", good[:len(good)-4], ErrMalformed},
		{"trailing bytes", append(bytes.Clone(good), 0, 0, 0, 0), ErrMalformed},
		{"length not multiple of 4", edit(func(b []byte) []byte {
			b = append(b, 0, 0)
			setLength(b, len(b)-headerSize)
			return b
		}), ErrMalformed},
		{"last attribute overruns", func() []byte {
			b := append(message(typeBindingRequest, aUser), 0x80, 0x22, 0, 8) // claims 8 bytes, has none
			setLength(b, len(b)-headerSize)
			return b
		}(), ErrMalformed},
		{"attribute overruns", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[headerSize+2:], 200) // USERNAME length
			return b
		}), ErrMalformed},
		{"no username", signed(aControlling, aPriority), ErrMalformed},
		{"no message-integrity", withFingerprint(message(typeBindingRequest, aUser, aPriority)), ErrMalformed},
		{"no fingerprint", withIntegrity(message(typeBindingRequest, aUser), testPassword), ErrMalformed},
		{"bad fingerprint", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrFingerprintMismatch},
		{"corrupted attribute", edit(func(b []byte) []byte { b[headerSize+5] ^= 1; return b }), ErrFingerprintMismatch},
		{"attribute after fingerprint", afterFP, ErrMalformed},
		{"attribute between integrity and fingerprint", withFingerprint(append(
			withIntegrity(message(typeBindingRequest, aUser), testPassword), 0x80, 0x22, 0, 0)), ErrMalformed},
		{"two fingerprints", withFingerprint(withFingerprint(withIntegrity(message(typeBindingRequest, aUser), testPassword))), ErrMalformed},
		{"short fingerprint", withFingerprint(edit(func(b []byte) []byte {
			b = b[:len(b)-8]
			b = append(b, 0x80, 0x28, 0, 2, 0, 0, 0, 0)
			setLength(b, len(b)-headerSize)
			return b
		})), ErrMalformed},
		{"integrity-sha256 sized integrity", withFingerprint(
			message(typeBindingRequest, aUser, attr{0x0008, make([]byte, 32)})), ErrMalformed},
		{"short priority", signed(aUser, attr{0x0024, []byte{1, 2, 3}}), ErrMalformed},
		{"use-candidate with value", signed(aUser, attr{0x0025, u32(1)}), ErrMalformed},
		{"short tiebreaker", signed(aUser, attr{0x802A, u32(1)}), ErrMalformed},
		{"both roles", signed(aUser, aControlling, aControlled), ErrMalformed},
		{"two controlling", signed(aUser, aControlling, aControlling), ErrMalformed},
		{"username without colon", signed(attr{0x0006, []byte("Strtbrws")}), ErrMalformed},
		{"empty local ufrag", signed(attr{0x0006, []byte(":brws")}), ErrMalformed},
		{"empty remote ufrag", signed(attr{0x0006, []byte("Strt:")}), ErrMalformed},
		{"empty username", signed(attr{0x0006, nil}), ErrMalformed},
		{"username too long", signed(attr{0x0006, []byte("L:" + strings.Repeat("r", 511))}), ErrMalformed},
		{"unknown required attribute", signed(aUser, attr{0x0001, make([]byte, 8)}), ErrUnknownAttribute},
		{"long-term credentials", signed(aUser, attr{0x0014, []byte("realm")}), ErrUnknownAttribute},
		{"unknown required attribute, bad fingerprint", func() []byte {
			b := signed(aUser, attr{0x0030, nil})
			b[len(b)-1] ^= 1
			return b
		}(), ErrFingerprintMismatch},
	}
	sentinels := []error{ErrNotSTUN, ErrNotBindingRequest, ErrMalformed, ErrFingerprintMismatch, ErrUnknownAttribute}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Request{Priority: 9, LocalUfrag: []byte("stale")}
			err := ParseRequest(tt.pkt, &r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseRequest = %v, want %v", err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("%v also matches %v", err, s)
				}
			}
			if r.Priority != 0 || r.LocalUfrag != nil || r.integrityAt != 0 {
				t.Errorf("r = %+v after an error, want the zero Request", r)
			}
		})
	}
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{RoleNone: "none", RoleControlling: "controlling", RoleControlled: "controlled", 7: "none"} {
		if got := r.String(); got != want {
			t.Errorf("Role(%d).String() = %q, want %q", r, got, want)
		}
	}
}

// TestRFC5769 parses and verifies the sample request of RFC 5769 section
// 2.1, which a short-term credential (ICE) agent sends.
func TestRFC5769(t *testing.T) {
	pkt := []byte("\x00\x01\x00\x58" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x10" + "STUN test client" +
		"\x00\x24\x00\x04" + "\x6e\x00\x01\xff" +
		"\x80\x29\x00\x08" + "\x93\x2f\xf9\xb1\x51\x26\x3b\x36" +
		"\x00\x06\x00\x09" + "\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20" +
		"\x00\x08\x00\x14" +
		"\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5" +
		"\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2" +
		"\x80\x28\x00\x04" + "\xe5\x7a\x3b\xcf")
	var r Request
	if err := ParseRequest(pkt, &r); err != nil {
		t.Fatal(err)
	}
	if string(r.LocalUfrag) != "evtj" || string(r.RemoteUfrag) != "h6vY" || r.TransactionID != testTxID ||
		r.Priority != 0x6e0001ff || r.Role != RoleControlled || r.Tiebreaker != 0x932ff9b151263b36 || r.UseCandidate {
		t.Errorf("ParseRequest = %+v", r)
	}
	var x Responder
	if !x.Verify(pkt, &r, mustKey(t, "VOkJxbRl1RmTxUk/WvJxBt")) {
		t.Error("Verify rejects the RFC 5769 request")
	}
}

func TestValidUfrag(t *testing.T) {
	for u, want := range map[string]bool{"abcd": true, "A+/9": true, "abc": false, "ab:c": false, "ab cd": false, string(make([]byte, 257)): false} {
		if got := ValidUfrag(u); got != want {
			t.Errorf("ValidUfrag(%q) = %v", u, got)
		}
	}
}

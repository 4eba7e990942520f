package icelite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func mustKey(t testing.TB, pwd string) *Key {
	t.Helper()
	k, err := NewKey([]byte(pwd))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustParse(t testing.TB, pkt []byte) *Request {
	t.Helper()
	var r Request
	if err := ParseRequest(pkt, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestNewKey(t *testing.T) {
	for _, pwd := range []string{
		testPassword,
		strings.Repeat("a", 64),
		strings.Repeat("Z", 65), // hashed first (RFC 2104 section 2)
		strings.Repeat("0+/9", 64),
	} {
		if _, err := NewKey([]byte(pwd)); err != nil {
			t.Errorf("NewKey(%d bytes): %v", len(pwd), err)
		}
	}
	for _, tt := range []struct{ pwd, msg string }{
		{"", "0 bytes"},
		{testPassword[1:], "21 bytes"},
		{strings.Repeat("a", 257), "257 bytes"},
		{testPassword + ":", "byte 22"},
		{"é" + testPassword, "byte 0"},
		{testPassword[:10] + "-" + testPassword[10:], "byte 10"},
	} {
		k, err := NewKey([]byte(tt.pwd))
		if !errors.Is(err, ErrBadPassword) || k != nil {
			t.Errorf("NewKey(%q) = %v, %v, want ErrBadPassword", tt.pwd, k, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("NewKey(%q) error %q does not say %q", tt.pwd, err, tt.msg)
		}
		if len(tt.pwd) > 3 && strings.Contains(err.Error(), tt.pwd) {
			t.Errorf("error %q reveals the password", err)
		}
	}
}

// TestMACMatchesCryptoHMAC checks the precomputed-pad HMAC against
// crypto/hmac for key lengths around the block size and message lengths
// around block boundaries.
func TestMACMatchesCryptoHMAC(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	var x Responder
	for _, klen := range []int{22, 24, 32, 63, 64, 65, 128, 256} {
		pwd := make([]byte, klen)
		for i := range pwd {
			pwd[i] = chars[rng.IntN(len(chars))]
		}
		k, err := NewKey(pwd)
		if err != nil {
			t.Fatal(err)
		}
		for _, mlen := range []int{0, 1, 20, 55, 56, 64, 119, 120, 500} {
			msg := make([]byte, mlen)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			split := mlen / 3
			got, ok := x.mac(k, msg[:split], msg[split:])
			want := hmac.New(sha1.New, pwd)
			want.Write(msg)
			if !ok || !bytes.Equal(got, want.Sum(nil)) {
				t.Errorf("key %d bytes, message %d bytes: mac = %x, %v; want %x", klen, mlen, got, ok, want.Sum(nil))
			}
		}
	}
}

func TestVerify(t *testing.T) {
	key := mustKey(t, testPassword)
	pkt := browserRequest()
	r := mustParse(t, pkt)
	var x Responder

	orig := bytes.Clone(pkt)
	if !x.Verify(pkt, r, key) {
		t.Fatal("Verify rejects a correctly signed request")
	}
	if !bytes.Equal(pkt, orig) {
		t.Error("Verify modified the datagram")
	}

	if x.Verify(pkt, r, mustKey(t, strings.ToUpper(testPassword))) {
		t.Error("Verify accepts the wrong password")
	}
	if x.Verify(pkt, r, nil) || x.Verify(pkt, r, &Key{}) {
		t.Error("Verify accepts a nil or zero Key")
	}
	if x.Verify(pkt, &Request{}, key) {
		t.Error("Verify accepts the zero Request")
	}
	if x.Verify(pkt[:r.integrityAt+10], r, key) {
		t.Error("Verify accepts a datagram shorter than its Request")
	}
	// Every bit the MAC covers matters, and so does every MAC bit.
	for i := 0; i < r.integrityAt+24; i++ {
		if i == 2 || i == 3 || i >= r.integrityAt && i < r.integrityAt+4 {
			continue // the length, which Verify replaces, and the MESSAGE-INTEGRITY header, which ParseRequest checked
		}
		bad := bytes.Clone(pkt)
		bad[i] ^= 0x10
		if x.Verify(bad, r, key) {
			t.Errorf("Verify accepts the request with byte %d flipped", i)
		}
	}
	// The MAC does not cover FINGERPRINT.
	bad := bytes.Clone(pkt)
	bad[len(bad)-1] ^= 1
	if !x.Verify(bad, r, key) {
		t.Error("Verify depends on FINGERPRINT")
	}
	// A request signed with the length counting FINGERPRINT (a classic
	// implementation bug) must fail.
	wrong := message(typeBindingRequest, aUser)
	setLength(wrong, len(wrong)-headerSize+24+8)
	m := hmac.New(sha1.New, []byte(testPassword))
	m.Write(wrong)
	wrong = m.Sum(append(wrong, 0, 8, 0, 20))
	wrong = withFingerprint(wrong)
	if x.Verify(wrong, mustParse(t, wrong), key) {
		t.Error("Verify accepts a MAC computed over the wrong length")
	}
}

// decodeSuccess checks the parts of a Binding success response that do not
// depend on the address and returns the XOR-MAPPED-ADDRESS value. It decodes
// by hand, independently of AppendSuccess; the pion/stun interop test
// decodes with a real STUN library.
func decodeSuccess(t *testing.T, resp []byte, txid [12]byte, pwd string) []byte {
	t.Helper()
	if len(resp) < headerSize+8+24+8 {
		t.Fatalf("response is %d bytes", len(resp))
	}
	if typ := binary.BigEndian.Uint16(resp); typ != 0x0101 {
		t.Errorf("type = %#04x, want Binding success 0x0101", typ)
	}
	if n := int(binary.BigEndian.Uint16(resp[2:])); n != len(resp)-headerSize {
		t.Errorf("length = %d, want %d", n, len(resp)-headerSize)
	}
	if c := binary.BigEndian.Uint32(resp[4:]); c != magicCookie {
		t.Errorf("cookie = %#x", c)
	}
	if !bytes.Equal(resp[8:20], txid[:]) {
		t.Errorf("transaction ID = %x, want %x", resp[8:20], txid)
	}
	fp := len(resp) - 8
	if !bytes.Equal(resp[fp:fp+4], []byte{0x80, 0x28, 0, 4}) {
		t.Errorf("last attribute header = % x, want FINGERPRINT", resp[fp:fp+4])
	}
	if got, want := binary.BigEndian.Uint32(resp[fp+4:]), crc32.ChecksumIEEE(resp[:fp])^0x5354554e; got != want {
		t.Errorf("FINGERPRINT = %#x, want %#x", got, want)
	}
	mi := fp - 24
	if !bytes.Equal(resp[mi:mi+4], []byte{0, 8, 0, 20}) {
		t.Errorf("attribute header = % x, want MESSAGE-INTEGRITY", resp[mi:mi+4])
	}
	signedPart := bytes.Clone(resp[:mi])
	setLength(signedPart, mi+24-headerSize)
	m := hmac.New(sha1.New, []byte(pwd))
	m.Write(signedPart)
	if got, want := resp[mi+4:fp], m.Sum(nil); !bytes.Equal(got, want) {
		t.Errorf("MESSAGE-INTEGRITY = %x, want %x", got, want)
	}
	xma := resp[headerSize:mi]
	if typ, n := binary.BigEndian.Uint16(xma), int(binary.BigEndian.Uint16(xma[2:])); typ != 0x0020 || n != len(xma)-4 {
		t.Fatalf("first attribute = %#04x length %d, want XOR-MAPPED-ADDRESS of length %d", typ, n, len(xma)-4)
	}
	return xma[4:]
}

func TestAppendSuccess(t *testing.T) {
	key := mustKey(t, testPassword)
	pkt := browserRequest()
	r := mustParse(t, pkt)
	var x Responder

	tests := []struct {
		addr netip.AddrPort
		want []byte // XOR-MAPPED-ADDRESS value
	}{
		// The XOR-MAPPED-ADDRESS values of RFC 5769 sections 2.2 and 2.3,
		// whose transaction ID testTxID is.
		{netip.MustParseAddrPort("192.0.2.1:32853"), []byte{0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}},
		{netip.MustParseAddrPort("[::ffff:192.0.2.1]:32853"), []byte{0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}},
		{netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853"), []byte{
			0, 2, 0xa1, 0x47,
			0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
		}},
		{netip.MustParseAddrPort("[fe80::1%eth0]:1"), nil}, // zone dropped; filled in below
	}
	fe80 := tests[3].addr.Addr().As16()
	tests[3].want = []byte{0, 2, 0x21, 0x13}
	for i, m := range append([]byte{0x21, 0x12, 0xa4, 0x42}, testTxID[:]...) {
		tests[3].want = append(tests[3].want, fe80[i]^m)
	}

	for _, tt := range tests {
		t.Run(tt.addr.String(), func(t *testing.T) {
			prefix := []byte("prefix")
			out := make([]byte, len(prefix), len(prefix)+MaxResponseSize)
			copy(out, prefix)
			got, err := x.AppendSuccess(out, r, tt.addr, key)
			if err != nil {
				t.Fatal(err)
			}
			if &got[0] != &out[0] {
				t.Error("AppendSuccess reallocated a buffer with room for MaxResponseSize")
			}
			if !bytes.Equal(got[:len(prefix)], prefix) {
				t.Error("AppendSuccess overwrote dst[:len(dst)]")
			}
			resp := got[len(prefix):]
			if want := 64 + 12*int(tt.want[1]-1); len(resp) != want || len(resp) > MaxResponseSize {
				t.Errorf("response is %d bytes, want %d (max %d)", len(resp), want, MaxResponseSize)
			}
			if v := decodeSuccess(t, resp, testTxID, testPassword); !bytes.Equal(v, tt.want) {
				t.Errorf("XOR-MAPPED-ADDRESS = % x, want % x", v, tt.want)
			}
		})
	}
}

func TestAppendSuccessInPlace(t *testing.T) {
	key := mustKey(t, testPassword)
	pkt := browserRequest()
	r := mustParse(t, pkt)
	var x Responder
	resp, err := x.AppendSuccess(pkt[:0], r, netip.MustParseAddrPort("198.51.100.7:4444"), key)
	if err != nil {
		t.Fatal(err)
	}
	if &resp[0] != &pkt[0] {
		t.Error("response not written over the request")
	}
	decodeSuccess(t, resp, testTxID, testPassword)
}

func TestAppendSuccessGrows(t *testing.T) {
	var x Responder
	r := mustParse(t, browserRequest())
	resp, err := x.AppendSuccess(nil, r, netip.MustParseAddrPort("[2001:db8::1]:9"), mustKey(t, testPassword))
	if err != nil || len(resp) != MaxResponseSize {
		t.Fatalf("AppendSuccess(nil) = %d bytes, %v; want %d bytes", len(resp), err, MaxResponseSize)
	}
	decodeSuccess(t, resp, testTxID, testPassword)
}

func TestAppendSuccessErrors(t *testing.T) {
	var x Responder
	r := mustParse(t, browserRequest())
	dst := []byte("keep")
	addr := netip.MustParseAddrPort("192.0.2.1:1")
	for _, tt := range []struct {
		name string
		addr netip.AddrPort
		key  *Key
		want error
	}{
		{"zero address", netip.AddrPort{}, mustKey(t, testPassword), ErrBadAddress},
		{"zero address with port", netip.AddrPortFrom(netip.Addr{}, 9), mustKey(t, testPassword), ErrBadAddress},
		{"nil key", addr, nil, ErrBadPassword},
		{"zero key", addr, &Key{}, ErrBadPassword},
	} {
		got, err := x.AppendSuccess(dst, r, tt.addr, tt.key)
		if !errors.Is(err, tt.want) || string(got) != "keep" {
			t.Errorf("%s: AppendSuccess = %q, %v; want %q, %v", tt.name, got, err, "keep", tt.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "icelite: ") {
			t.Errorf("%s: error %q lacks the package prefix", tt.name, err)
		}
	}
}

// TestAllocs pins the per-packet cost at zero allocations: a worker answering
// a check, and one dropping a check with the wrong password.
func TestAllocs(t *testing.T) {
	key := mustKey(t, testPassword)
	wrongKey := mustKey(t, strings.Repeat("x", 24))
	pkt := browserRequest()
	garbage := bytes.Clone(pkt)
	garbage[headerSize+5] ^= 1 // FINGERPRINT mismatch
	addr4 := netip.MustParseAddrPort("192.0.2.1:32853")
	addr6 := netip.MustParseAddrPort("[2001:db8::1]:32853")
	out := make([]byte, 0, MaxResponseSize)
	x := new(Responder)
	var r Request

	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"answer IPv4", func() {
			if ParseRequest(pkt, &r) != nil || !x.Verify(pkt, &r, key) {
				panic("rejected")
			}
			out, _ = x.AppendSuccess(out[:0], &r, addr4, key)
		}},
		{"answer IPv6", func() {
			_ = ParseRequest(pkt, &r)
			_ = x.Verify(pkt, &r, key)
			out, _ = x.AppendSuccess(out[:0], &r, addr6, key)
		}},
		{"bad integrity", func() {
			if ParseRequest(pkt, &r) != nil || x.Verify(pkt, &r, wrongKey) {
				panic("accepted")
			}
		}},
		{"parse error", func() {
			if ParseRequest(garbage, &r) == nil {
				panic("accepted")
			}
		}},
	} {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", tt.name, n)
		}
	}
}

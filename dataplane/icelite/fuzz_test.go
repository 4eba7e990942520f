package icelite

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// FuzzParseRequest checks that ParseRequest and Verify never panic, that
// whatever ParseRequest accepts pion/stun decodes as the same Binding
// request with a valid FINGERPRINT, that Verify agrees with pion/stun's
// MessageIntegrity.Check, and that AppendSuccess answers it with a response
// pion/stun accepts.
//
// Each input is checked as a datagram and, so that mutations are not all
// stopped by the FINGERPRINT CRC, also as the attributes of a Binding
// request that gets a correct header, MESSAGE-INTEGRITY and FINGERPRINT.
func FuzzParseRequest(f *testing.F) {
	seeds := [][]byte{
		pionRequest(f, pionPassword, false).Raw,
		pionRequest(f, pionPassword, true).Raw,
		pionRequest(f, "another+password+of+24ch", true).Raw,
		browserRequest(),
		signed(aUser),
		signed(aControlled, aUser, attr{0x8022, []byte("STUN test client")}),
		// Attributes only, for the wrapped check.
		message(typeBindingRequest, aUser, aNetworkInfo, aControlling, aUseCand, aPriority)[headerSize:],
		message(typeBindingRequest, attr{0x0006, []byte("a:b")}, aControlled)[headerSize:],
	}
	for _, s := range seeds {
		f.Add(s)
		for _, n := range []int{0, 1, 19, 20, 24, len(s) / 2, len(s) - 8, len(s) - 4, len(s) - 1} {
			f.Add(bytes.Clone(s[:n]))
		}
	}
	key := mustKey(f, pionPassword)
	src := netip.MustParseAddrPort("[2001:db8::1]:3478")

	f.Fuzz(func(t *testing.T, pkt []byte) {
		checkDatagram(t, pkt, key, src)
		wrapped := append(message(typeBindingRequest), pkt...)
		setLength(wrapped, len(wrapped)-headerSize)
		checkDatagram(t, withFingerprint(withIntegrity(wrapped, pionPassword)), key, src)
	})
}

func checkDatagram(t *testing.T, pkt []byte, key *Key, src netip.AddrPort) {
	orig := bytes.Clone(pkt)
	var (
		r Request
		x Responder
	)
	err := ParseRequest(pkt, &r)
	ok := x.Verify(pkt, &r, key)
	if !bytes.Equal(pkt, orig) {
		t.Fatal("datagram modified")
	}
	if err != nil {
		if r.integrityAt != 0 || r.LocalUfrag != nil || ok {
			t.Fatalf("ParseRequest failed (%v) but left a request Verify uses", err)
		}
		return
	}

	m := &stun.Message{Raw: bytes.Clone(pkt)}
	if err := m.Decode(); err != nil {
		t.Fatalf("accepted, but pion/stun cannot decode it: %v", err)
	}
	if m.Type != stun.BindingRequest || m.TransactionID != r.TransactionID {
		t.Fatalf("pion/stun sees %v %x", m.Type, m.TransactionID)
	}
	var u stun.Username
	if err := u.GetFrom(m); err != nil || string(u) != string(r.LocalUfrag)+":"+string(r.RemoteUfrag) {
		t.Fatalf("pion/stun USERNAME %q (%v), ParseRequest %q:%q", u, err, r.LocalUfrag, r.RemoteUfrag)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Fatalf("accepted, but pion/stun FINGERPRINT: %v", err)
	}
	if pionOK := stun.NewShortTermIntegrity(pionPassword).Check(m) == nil; pionOK != ok {
		t.Fatalf("Verify = %v, pion/stun MessageIntegrity.Check ok = %v", ok, pionOK)
	}

	resp, err := x.AppendSuccess(nil, &r, src, key)
	if err != nil {
		t.Fatal(err)
	}
	pm := new(stun.Message)
	if err := stun.Decode(resp, pm); err != nil {
		t.Fatalf("pion/stun cannot decode the response: %v", err)
	}
	if pm.Type != stun.BindingSuccess || pm.TransactionID != r.TransactionID {
		t.Fatalf("response is %v %x", pm.Type, pm.TransactionID)
	}
	if err := stun.Fingerprint.Check(pm); err != nil {
		t.Fatal(err)
	}
	if err := stun.NewShortTermIntegrity(pionPassword).Check(pm); err != nil {
		t.Fatal(err)
	}
	var xma stun.XORMappedAddress
	if err := xma.GetFrom(pm); err != nil || xma.Port != int(src.Port()) || !xma.IP.Equal(src.Addr().AsSlice()) {
		t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want %v", xma, err, src)
	}
}

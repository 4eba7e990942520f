package icelite

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

const (
	pionLocalUfrag  = "StraitLeg0001"
	pionRemoteUfrag = "Xa9q"
	pionPassword    = "0123456789abcdefABCDEF+/" // 24 ice-chars, like a browser's
)

// pionRequest builds the connectivity check a browser's ICE agent sends to
// Strait, with pion/stun and pion/ice's attribute types: USERNAME
// "ourUfrag:theirUfrag" (RFC 8445 section 7.2.2), ICE-CONTROLLING, PRIORITY,
// optionally USE-CANDIDATE, MESSAGE-INTEGRITY under our password, FINGERPRINT.
func pionRequest(t testing.TB, pwd string, useCandidate bool) *stun.Message {
	t.Helper()
	setters := []stun.Setter{
		stun.TransactionID,
		stun.BindingRequest,
		stun.NewUsername(pionLocalUfrag + ":" + pionRemoteUfrag),
		ice.AttrControlling(0x0102030405060708),
		ice.PriorityAttr(2130706431),
	}
	if useCandidate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkPionResponse decodes resp with pion/stun and checks it the way a
// full ICE agent checks the answer to its check.
func checkPionResponse(t testing.TB, resp []byte, req *stun.Message, pwd string, src netip.AddrPort) {
	t.Helper()
	m := new(stun.Message)
	if err := stun.Decode(resp, m); err != nil {
		t.Fatalf("pion/stun cannot decode the response: %v", err)
	}
	if m.Type != stun.BindingSuccess {
		t.Errorf("type = %v, want %v", m.Type, stun.BindingSuccess)
	}
	if m.TransactionID != req.TransactionID {
		t.Errorf("transaction ID = %x, want %x", m.TransactionID, req.TransactionID)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	if err := stun.NewShortTermIntegrity(pwd).Check(m); err != nil {
		t.Errorf("MESSAGE-INTEGRITY: %v", err)
	}
	var xma stun.XORMappedAddress
	if err := xma.GetFrom(m); err != nil {
		t.Fatalf("XOR-MAPPED-ADDRESS: %v", err)
	}
	want := src.Addr().Unmap()
	if got, ok := netip.AddrFromSlice(xma.IP); !ok || got != want.WithZone("") || xma.Port != int(src.Port()) {
		t.Errorf("XOR-MAPPED-ADDRESS = %v, want %v", xma, src)
	}
	if len(xma.IP) != want.BitLen()/8 {
		t.Errorf("XOR-MAPPED-ADDRESS family carries %d address bytes, want %d", len(xma.IP), want.BitLen()/8)
	}
	if want := []stun.AttrType{stun.AttrXORMappedAddress, stun.AttrMessageIntegrity, stun.AttrFingerprint}; len(m.Attributes) != len(want) {
		t.Errorf("response has attributes %v, want %v", m.Attributes, want)
	} else {
		for i, a := range m.Attributes {
			if a.Type != want[i] {
				t.Errorf("attribute %d is %v, want %v", i, a.Type, want[i])
			}
		}
	}
}

func TestPionInterop(t *testing.T) {
	key := mustKey(t, pionPassword)
	var x Responder
	for _, src := range []netip.AddrPort{
		netip.MustParseAddrPort("203.0.113.9:50000"),
		netip.MustParseAddrPort("[::ffff:203.0.113.9]:50001"),
		netip.MustParseAddrPort("[2001:db8::7]:65535"),
		netip.MustParseAddrPort("[::1]:1"),
	} {
		for _, useCandidate := range []bool{false, true} {
			req := pionRequest(t, pionPassword, useCandidate)
			var r Request
			if err := ParseRequest(req.Raw, &r); err != nil {
				t.Fatalf("ParseRequest(pion request): %v", err)
			}
			if string(r.LocalUfrag) != pionLocalUfrag || string(r.RemoteUfrag) != pionRemoteUfrag ||
				r.UseCandidate != useCandidate || r.Priority != 2130706431 ||
				r.Role != RoleControlling || r.Tiebreaker != 0x0102030405060708 ||
				r.TransactionID != req.TransactionID {
				t.Errorf("ParseRequest(pion request) = %+v", r)
			}
			if !x.Verify(req.Raw, &r, key) {
				t.Fatal("Verify rejects a pion/stun request signed with the right password")
			}
			resp, err := x.AppendSuccess(make([]byte, 0, MaxResponseSize), &r, src, key)
			if err != nil {
				t.Fatal(err)
			}
			checkPionResponse(t, resp, req, pionPassword, src)
		}
	}

	// Signed with another password: no answer.
	req := pionRequest(t, "wrongwrongwrongwrongwrong", true)
	var r Request
	if err := ParseRequest(req.Raw, &r); err != nil {
		t.Fatal(err)
	}
	if x.Verify(req.Raw, &r, key) {
		t.Error("Verify accepts a request signed with another password")
	}
}

// TestPionStunRejects checks that pion/stun's own checks fail on responses
// signed with another password or altered after signing, so that
// checkPionResponse can tell a bad response from a good one.
func TestPionStunRejects(t *testing.T) {
	var x Responder
	req := pionRequest(t, pionPassword, false)
	r := mustParse(t, req.Raw)
	resp, err := x.AppendSuccess(nil, r, netip.MustParseAddrPort("192.0.2.1:1"), mustKey(t, "another+password+of+24ch"))
	if err != nil {
		t.Fatal(err)
	}
	m := new(stun.Message)
	if err := stun.Decode(resp, m); err != nil {
		t.Fatal(err)
	}
	if stun.NewShortTermIntegrity(pionPassword).Check(m) == nil {
		t.Error("pion/stun accepts a response signed with another password")
	}
	resp[len(resp)-1] ^= 1
	if err := stun.Decode(resp, m); err != nil {
		t.Fatal(err)
	}
	if stun.Fingerprint.Check(m) == nil {
		t.Error("pion/stun accepts a corrupted FINGERPRINT")
	}
}

// TestConstantsMatchPion checks the numbers this package writes by hand
// against pion/stun's.
func TestConstantsMatchPion(t *testing.T) {
	if got := stun.BindingRequest.Value(); got != typeBindingRequest {
		t.Errorf("Binding request type = %#04x, pion says %#04x", typeBindingRequest, got)
	}
	if got := stun.BindingSuccess.Value(); got != typeBindingSuccess {
		t.Errorf("Binding success type = %#04x, pion says %#04x", typeBindingSuccess, got)
	}
	var m stun.Message
	m.WriteHeader()
	if got := len(m.Raw); got != headerSize {
		t.Errorf("header size %d, pion writes %d", headerSize, got)
	}
	if got := net.IPv6len; MaxResponseSize != headerSize+4+4+got+4+integritySize+4+fingerprintLen {
		t.Errorf("MaxResponseSize = %d", MaxResponseSize)
	}
}

// TestResponseMatchesPion checks that AppendSuccess writes the very bytes
// pion/stun builds for the same answer (XOR-MAPPED-ADDRESS,
// MESSAGE-INTEGRITY, FINGERPRINT, in that order).
func TestResponseMatchesPion(t *testing.T) {
	req := pionRequest(t, pionPassword, true)
	p := newPionAnswer(pionPassword)
	want, ok := p.answer(req.Raw, benchSrc)
	if !ok {
		t.Fatal("pion/stun rejects its own request")
	}
	var x Responder
	got, err := x.AppendSuccess(nil, mustParse(t, req.Raw), benchSrc, mustKey(t, pionPassword))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("AppendSuccess:\n% x\npion/stun:\n% x", got, want)
	}
}

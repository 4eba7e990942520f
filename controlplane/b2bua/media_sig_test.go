package b2bua

import (
	"net/netip"
	"testing"
)

// TestSignallingIPReachesTheSpec: the IP a plain leg's SIP peer signals
// from (an INVITE's source, an answer's) goes to the node in every stream's
// PlainSpec, so that the node learns a NAT'd peer's media from it; a name
// or nothing leaves it empty, and the first address seen stays.
func TestSignallingIPReachesTheSpec(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5060": "192.0.2.7", "[2001:db8::1]:5062": "2001:db8::1", "[::ffff:192.0.2.9]:5060": "192.0.2.9",
		"198.51.100.1": "198.51.100.1", "pbx.example.com:5060": "", "": "",
	} {
		if got := sourceIP(in); (got.IsValid() && got.String() != want) || (!got.IsValid() && want != "") {
			t.Errorf("sourceIP(%q) = %v, want %q", in, got, want)
		}
	}
	m := &media{legs: []*mediaLeg{{kind: kindWebRTC}, {kind: kindPlain}}}
	m.legs[1].grow(2)
	if ps := m.spec(1).GetStreams()[0].GetPlain(); ps.GetSignallingIp() != "" {
		t.Fatalf("signalling_ip %q before any SIP was seen", ps.GetSignallingIp())
	}
	m.signalledFrom(1, "pbx.example.com:5060") // a name: unknown
	m.signalledFrom(1, "203.0.113.5:5060")
	m.signalledFrom(1, "203.0.113.99:5060") // the first address seen stays
	for j, st := range m.spec(1).GetStreams() {
		if got := st.GetPlain().GetSignallingIp(); got != "203.0.113.5" {
			t.Errorf("stream %d: signalling_ip %q", j, got)
		}
	}
	if m.legs[1].sigIP != netip.MustParseAddr("203.0.113.5") {
		t.Fatalf("sigIP %v", m.legs[1].sigIP)
	}
}

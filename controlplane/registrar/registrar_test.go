package registrar

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// jssipRegister is a REGISTER as JsSIP 3.13.8 sends it (from the captures).
const jssipRegister = "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/WS 09b10goat64m.invalid;branch=z9hG4bK5194961\r\n" +
	"Max-Forwards: 69\r\n" +
	"To: <sip:alice@127.0.0.1>\r\n" +
	"From: <sip:alice@127.0.0.1>;tag=lb2infoe5g\r\n" +
	"Call-ID: vs3o2asq0cmacjucs0b1jt\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Expires: 600\r\n" +
	"Contact: <sip:2fni19c0@09b10goat64m.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:70c2a9d4-7dce-4c8e-86cb-f8ca0cbd6e7e>\";expires=600\r\n" +
	"Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY,SUBSCRIBE\r\n" +
	"Supported: path,gruu,outbound\r\n" +
	"User-Agent: JsSIP-test-client\r\n" +
	"Content-Length: 0\r\n\r\n"

func parseReq(t testing.TB, raw string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

func TestParseRegisterJsSIP(t *testing.T) {
	aor, cs, star, err := parseRegister(parseReq(t, jssipRegister), 3600)
	if err != nil || aor != "alice" || star || len(cs) != 1 {
		t.Fatalf("%q %v %v %v", aor, cs, star, err)
	}
	c := cs[0]
	if c.expires != 600 || c.regID != "1" || c.instance != "<urn:uuid:70c2a9d4-7dce-4c8e-86cb-f8ca0cbd6e7e>" ||
		c.uri.Host != "09b10goat64m.invalid" || c.uri.User != "2fni19c0" {
		t.Fatalf("contact %+v", c)
	}
	for name, raw := range map[string]string{
		"bad expires":       strings.Replace(jssipRegister, "Expires: 600", "Expires: soon", 1),
		"star with expires": strings.Replace(jssipRegister, "Contact: <sip:2fni19c0@09b10goat64m.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:70c2a9d4-7dce-4c8e-86cb-f8ca0cbd6e7e>\";expires=600", "Contact: *", 1),
		"no user":           strings.Replace(jssipRegister, "To: <sip:alice@127.0.0.1>", "To: <sip:127.0.0.1>", 1),
		"negative expires=": strings.Replace(jssipRegister, ";expires=600", ";expires=-1", 1),
	} {
		if _, _, _, err := parseRegister(parseReq(t, raw), 3600); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	star0 := strings.Replace(strings.Replace(jssipRegister, "Expires: 600", "Expires: 0", 1),
		"Contact: <sip:2fni19c0@09b10goat64m.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:70c2a9d4-7dce-4c8e-86cb-f8ca0cbd6e7e>\";expires=600", "Contact: *", 1)
	if _, cs, star, err := parseRegister(parseReq(t, star0), 3600); err != nil || !star || len(cs) != 0 {
		t.Errorf("Contact * with Expires 0: %v %v %v", cs, star, err)
	}
}

// FuzzParseRegister: whatever the REGISTER, parsing gives an error or an
// AOR with contacts that have a host and a non-negative lifetime.
func FuzzParseRegister(f *testing.F) {
	f.Add([]byte(jssipRegister))
	f.Add([]byte(strings.Replace(jssipRegister, "Expires: 600", "Expires: 0", 1)))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		aor, cs, _, err := parseRegister(req, 600)
		if err != nil {
			return
		}
		if aor == "" {
			t.Fatal("empty AOR accepted")
		}
		for _, c := range cs {
			if c.uri.Host == "" || c.expires < 0 {
				t.Fatalf("contact %+v", c)
			}
		}
	})
}

func TestRegistryFlows(t *testing.T) {
	r := NewRegistry()
	var count int
	r.OnChange(func(n int) { count = n })
	contact := sip.Uri{Scheme: "sip", User: "x", Host: "y.invalid"}
	b := r.Put(Binding{AOR: "alice", Contact: contact, Instance: "i1", RegID: "1", Transport: "WS", Source: "1.2.3.4:5",
		Expires: time.Now().Add(time.Minute)})
	if b.Key == "" || count != 1 || len(r.Lookup("alice")) != 1 {
		t.Fatalf("put: %+v count %d", b, count)
	}
	again := r.Put(Binding{AOR: "alice", Contact: contact, Instance: "i1", RegID: "1", Transport: "WS", Source: "1.2.3.4:5",
		Expires: time.Now().Add(time.Minute)})
	if again.Key != b.Key || r.Len() != 1 {
		t.Fatal("a refresh made a second binding")
	}
	if got := r.FromSource("1.2.3.4:5"); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("FromSource %v", got)
	}
	if gone := r.RemoveSource("1.2.3.4:5"); len(gone) != 1 || r.Len() != 0 || count != 0 {
		t.Fatalf("RemoveSource %v", gone)
	}
	if !r.FlowFailed(b.Key) || !r.FlowFailedAOR("alice") {
		t.Fatal("a closed flow's binding is not remembered as failed")
	}
	// The browser comes back on a new connection: same key.
	back := r.Put(Binding{AOR: "alice", Contact: contact, Instance: "i1", RegID: "1", Transport: "WS", Source: "1.2.3.4:6",
		Expires: time.Now().Add(time.Minute)})
	if back.Key != b.Key || r.FlowFailed(b.Key) {
		t.Fatalf("reconnected browser got key %q, had %q", back.Key, b.Key)
	}
	r.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if len(r.Lookup("alice")) != 0 || len(r.Expire()) != 1 || r.Len() != 0 {
		t.Fatal("lapsed binding still there")
	}
}

package presence

import (
	"testing"
)

func TestPIDFRoundTrip(t *testing.T) {
	for _, st := range Statuses {
		doc := EncodePIDF("sip:alice@pbx.example", State{User: "alice", Status: st, Note: "in <the> office & out"})
		got, note, err := DecodePIDF(doc)
		if err != nil || got != st || note != "in <the> office & out" {
			t.Errorf("%s: %q %q %v\n%s", st, got, note, err, doc)
		}
	}
}

// Documents as presence servers and phones write them (other prefixes,
// RPID activities of their own, no tuple).
func TestDecodePIDF(t *testing.T) {
	for _, tc := range []struct {
		name, doc, status, note string
		bad                     bool
	}{
		{"open, default namespace", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@x"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`, "available", "", false},
		{"closed with a note", `<?xml version="1.0"?><p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" entity="sip:bob@x"><p:tuple id="a"><p:status><p:basic>closed</p:basic></p:status></p:tuple><p:note>gone home</p:note></p:presence>`, "offline", "gone home", false},
		{"on the phone", `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:bob@x"><tuple id="a"><status><basic>open</basic></status></tuple><d:person id="p"><r:activities><r:on-the-phone/></r:activities></d:person></presence>`, "busy", "", false},
		{"no tuple", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@x"/>`, "offline", "", false},
		{"not presence", `<html/>`, "", "", true},
		{"malformed", `<presence><tuple>`, "", "", true},
		{"empty", ``, "", "", true},
	} {
		st, note, err := DecodePIDF([]byte(tc.doc))
		if (err != nil) != tc.bad || st != tc.status || note != tc.note {
			t.Errorf("%s: %q %q %v", tc.name, st, note, err)
		}
	}
}

func FuzzDecodePIDF(f *testing.F) {
	for _, st := range Statuses {
		f.Add(EncodePIDF("sip:a@b", State{Status: st, Note: "n"}))
	}
	f.Add([]byte(`<presence><tuple><status><basic>open</basic></status></tuple></presence>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		st, note, err := DecodePIDF(doc)
		if err == nil && Check(st, note) != nil {
			t.Fatalf("decoded %q %q: not a valid state", st, note)
		}
	})
}

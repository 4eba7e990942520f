package b2bua

import (
	"reflect"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

func TestRouteEntries(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"<sip:p1;lr>"}, []string{"<sip:p1;lr>"}},
		{[]string{"<sip:p1;lr>, <sip:p2;lr>", "<sip:p3;lr>"}, []string{"<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"}},
		{[]string{`"a, b" <sip:p1;lr>,<sip:p2;lr;x="1,2">`}, []string{`"a, b" <sip:p1;lr>`, `<sip:p2;lr;x="1,2">`}},
		{[]string{"sip:p1;lr"}, []string{"sip:p1;lr"}},
		{[]string{" , "}, nil},
	} {
		var hs []sip.Header
		for _, v := range tc.in {
			hs = append(hs, sip.NewHeader("Record-Route", v))
		}
		if got := routeEntries(hs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("routeEntries(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func testStack(t *testing.T) *sipnet.Stack {
	t.Helper()
	st, err := sipnet.New(sipnet.Config{Host: "203.0.113.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func response(t *testing.T, code int, tag, contact string, rr ...string) *sip.Response {
	t.Helper()
	res := sip.NewResponse(code, "")
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "pbx"}, Params: sip.NewParams()}
	to.Params.Add("tag", tag)
	res.AppendHeader(to)
	if contact != "" {
		var u sip.Uri
		if err := sip.ParseUri(contact, &u); err != nil {
			t.Fatal(err)
		}
		res.AppendHeader(&sip.ContactHeader{Address: u, Params: sip.NewParams()})
	}
	for _, r := range rr {
		res.AppendHeader(sip.NewHeader("Record-Route", r))
	}
	return res
}

// RFC 3261 section 12.1.2: a UAC's route set is the 2xx's Record-Route
// reversed, and it stays what it was when a re-INVITE's 2xx carries none
// (section 12.2.1.2: only the target is refreshed).
func TestUACRouteSet(t *testing.T) {
	st := testStack(t)
	target := sip.Uri{Scheme: "sip", User: "bob", Host: "198.51.100.7", Port: 5060}
	d := newUAC(st, target, sip.Uri{Scheme: "sip", User: "alice", Host: "h"}, target, "", "UDP", "")
	d.established(response(t, 180, "t1", "sip:bob@198.51.100.9:5080", "<sip:192.0.2.1:5070;lr>"))
	d.established(response(t, 200, "t1", "sip:bob@198.51.100.9:5080", "<sip:192.0.2.2:5071;lr>", "<sip:192.0.2.1:5070;lr>"))
	want := []string{"<sip:192.0.2.1:5070;lr>", "<sip:192.0.2.2:5071;lr>"}
	if !reflect.DeepEqual(d.routes, want) {
		t.Fatalf("route set %q, want %q", d.routes, want)
	}
	d.established(response(t, 200, "t1", "sip:bob@198.51.100.10:5090")) // a re-INVITE's 2xx
	if !reflect.DeepEqual(d.routes, want) {
		t.Fatalf("a re-INVITE's 2xx changed the route set to %q", d.routes)
	}
	bye := d.request(sip.BYE, nil, "")
	if bye.Recipient.Host != "198.51.100.10" {
		t.Errorf("BYE Request-URI %s: the target was not refreshed", bye.Recipient.String())
	}
	var got []string
	for _, h := range bye.GetHeaders("Route") {
		got = append(got, h.Value())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("BYE Route %q, want %q", got, want)
	}
	if bye.Destination() != "192.0.2.1:5070" {
		t.Errorf("BYE goes to %s, want the first route", bye.Destination())
	}
}

// A strict router (no lr, RFC 3261 section 12.2.1.1) takes the
// Request-URI; the remote target goes last in Route.
func TestStrictRoute(t *testing.T) {
	st := testStack(t)
	target := sip.Uri{Scheme: "sip", User: "bob", Host: "198.51.100.7", Port: 5060}
	d := newUAC(st, target, sip.Uri{Scheme: "sip", User: "alice", Host: "h"}, target, "", "UDP", "")
	d.established(response(t, 200, "t1", "sip:bob@198.51.100.7:5060", "<sip:192.0.2.2:5071;lr>", "<sip:192.0.2.1:5070>"))
	bye := d.request(sip.BYE, nil, "")
	if bye.Recipient.Host != "192.0.2.1" || bye.Recipient.Port != 5070 {
		t.Errorf("Request-URI %s, want the strict router", bye.Recipient.String())
	}
	var got []string
	for _, h := range bye.GetHeaders("Route") {
		got = append(got, h.Value())
	}
	want := []string{"<sip:192.0.2.2:5071;lr>", "<sip:bob@198.51.100.7:5060>"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Route %q, want %q", got, want)
	}
}

// RFC 3261 section 12.1.1: the responses that make a dialog carry the
// request's Record-Route, in order; a 100 and a failure need not.
func TestResponsesKeepRecordRoute(t *testing.T) {
	st := testStack(t)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice", Host: "203.0.113.1"})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "pbx"}, Params: sip.NewParams()}
	from.Params.Add("tag", "f1")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "203.0.113.1"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader("c1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(sip.NewHeader("Record-Route", "<sip:192.0.2.1;lr>, <sip:192.0.2.2;lr>"))
	req.AppendHeader(sip.NewHeader("Record-Route", "<sip:192.0.2.3;lr>"))
	for code, want := range map[int]int{180: 3, 183: 3, 200: 3, 100: 0, 486: 0} {
		res := st.Response(req, code, "", nil)
		if got := len(routeEntries(res.GetHeaders("Record-Route"))); got != want {
			t.Errorf("%d carries %d Record-Route entries, want %d", code, got, want)
			continue
		}
		if want > 0 {
			if got := routeEntries(res.GetHeaders("Record-Route")); got[0] != "<sip:192.0.2.1;lr>" || got[2] != "<sip:192.0.2.3;lr>" {
				t.Errorf("%d: Record-Route out of order: %q", code, got)
			}
		}
	}
}

// A UAS dialog's route set is the INVITE's Record-Route and stays so when
// Strait's own re-INVITE on it is answered without one.
func TestUASRouteSetFixed(t *testing.T) {
	st := testStack(t)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice", Host: "203.0.113.1"})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "pbx", Host: "198.51.100.7"}, Params: sip.NewParams()}
	from.Params.Add("tag", "f1")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "203.0.113.1"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader("c1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "198.51.100.7", Port: 5070}, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Record-Route", "<sip:192.0.2.1:5071;lr>, <sip:192.0.2.1:5072;lr>"))
	d := newUAS(st, req, nil)
	d.established(response(t, 200, "f1", "sip:pbx@198.51.100.7:5070"))
	reinv := d.request(sip.INVITE, nil, "")
	if got := routeEntries(reinv.GetHeaders("Route")); !reflect.DeepEqual(got, []string{"<sip:192.0.2.1:5071;lr>", "<sip:192.0.2.1:5072;lr>"}) {
		t.Fatalf("re-INVITE Route %q after a 2xx without Record-Route", got)
	}
	if reinv.Destination() != "192.0.2.1:5071" {
		t.Errorf("re-INVITE goes to %s", reinv.Destination())
	}
}

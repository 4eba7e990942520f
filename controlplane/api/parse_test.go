package api

import (
	"strings"
	"testing"
)

func TestParseCallRequest(t *testing.T) {
	for _, tc := range []struct {
		body, err string
	}{
		{`{"to":"echo","offer":"v=0\r\n"}`, ""},
		{`{"to":"sip:bob@example.com","from":"web","offer":"v=0\r\n","early":true}`, ""},
		{``, "empty body"},
		{`[]`, "bad JSON"},
		{`{"to":"echo"}`, `"offer" is required`},
		{`{"offer":"v=0"}`, `"to" is required`},
		{`{"to":"  ","offer":"v=0"}`, `"to" is required`},
		{`{"to":"echo","offer":"o=bad"}`, "not SDP"},
		{`{"to":"echo","offer":"v=0","extra":1}`, "unknown field"},
		{`{"to":"echo","offer":"v=0"} {}`, "data after"},
		{`{"to":"` + strings.Repeat("x", 300) + `","offer":"v=0"}`, "too long"},
		{`{"to":"echo","offer":"` + strings.Repeat("x", maxBody) + `"}`, "larger than"},
	} {
		_, err := ParseCallRequest(strings.NewReader(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.40q: %v", tc.body, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.40q: err %v, want %q", tc.body, err, tc.err)
		}
	}
}

func TestParseDTMFRequest(t *testing.T) {
	if d, err := ParseDTMFRequest(strings.NewReader(`{"digits":"12#*ab"}`)); err != nil || d != "12#*AB" {
		t.Fatalf("%q %v", d, err)
	}
	for _, bad := range []string{`{}`, `{"digits":""}`, `{"digits":"12x"}`, `{"digits":"` + strings.Repeat("1", 33) + `"}`, `{"digits":5}`} {
		if _, err := ParseDTMFRequest(strings.NewReader(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// FuzzParseCallRequest: any body is either a request with a callee and an
// SDP-looking offer, or an error; never a panic.
func FuzzParseCallRequest(f *testing.F) {
	for _, s := range []string{`{"to":"echo","offer":"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}`, `{"to":"sip:bob@x","from":"a","offer":"v=0","early":true}`,
		`{`, `null`, `{"to":1}`, `{"to":"a","offer":"v=0"}{"x":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseCallRequest(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if r.To == "" || !strings.HasPrefix(strings.TrimSpace(r.Offer), "v=0") || len(r.To) > 256 {
			t.Fatalf("accepted %+v", r)
		}
	})
}

// FuzzParseDTMFRequest: accepted digits are only DTMF symbols.
func FuzzParseDTMFRequest(f *testing.F) {
	for _, s := range []string{`{"digits":"123"}`, `{"digits":"#*ABCD"}`, `{"digits":"é"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDTMFRequest(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if d == "" || len(d) > maxDigits || strings.Trim(d, "0123456789*#ABCD") != "" {
			t.Fatalf("accepted %q", d)
		}
	})
}

func TestHTTPStatus(t *testing.T) {
	for sipCode, want := range map[int]int{400: 400, 404: 404, 480: 404, 486: 409, 488: 422, 408: 504, 503: 503, 500: 502, 501: 501, 487: 409} {
		if got := httpStatus(sipCode); got != want {
			t.Errorf("SIP %d -> HTTP %d, want %d", sipCode, got, want)
		}
	}
}

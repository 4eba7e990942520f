package rtpengine

import (
	"reflect"
	"testing"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := Dict{"command": "offer", "sdp": "v=0\r\n", "flags": []any{"trust-address"}, "n": 42,
		"replace": []string{"origin"}, "nested": Dict{"a": "b"}}
	b, err := encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := "d7:command5:offer5:flagsl13:trust-addresse1:ni42e6:nestedd1:a1:be7:replacel6:origine3:sdp5:v=0\r\ne"
	if string(b) != want {
		t.Fatalf("encoded %q\nwant    %q", b, want)
	}
	out, rest, err := decode(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("decode: %v, rest %q", err, rest)
	}
	in["replace"] = []any{"origin"} // lists decode as []any
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("decoded %#v", out)
	}
}

func TestBencodeRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "d", "l", "5:abc", "i12", "d3:keye", "x"} {
		if _, _, err := decode([]byte(s)); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F) {
	files, err := filepath.Glob("testdata/*.sdp")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(answerFromPBX))
	f.Add([]byte("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 1 RTP/AVP 0 0 96\na=rtpmap:96 x/1/2\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a b\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP6 ::\r\na=mid:b\r\na=bundle-only\r\n"))
}

// wantStatus fails unless err is an *Error with one of the codes.
func wantStatus(t *testing.T, err error, codes ...int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error without status: %v", err)
	}
	for _, c := range codes {
		if e.StatusCode() == c {
			return
		}
	}
	t.Fatalf("status %d, want one of %v: %v", e.StatusCode(), codes, err)
}

// FuzzParse: Parse never panics, fails only with status 400, and what it
// accepts marshals to SDP that parses back to the same description.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			wantStatus(t, err, statusBadRequest)
			return
		}
		out, err := d.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed description: %v", err)
		}
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal output does not parse: %v\n%q\n%q", err, b, out)
		}
		out2, err := d2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable (%v):\n%q\n%q", err, out, out2)
		}
	})
}

// FuzzTranslate runs the browser-to-trunk pipeline on arbitrary input
// taken as a browser offer: plain offer, a synthetic PBX answer, then
// Strait's answer to the browser. Nothing panics, every failure carries a
// status that blames the input (400 or 488, never 500), every description
// built re-parses, and the answer to the browser names no address but
// Strait's.
func FuzzTranslate(f *testing.F) {
	addSeeds(f)
	trunk := Policy{Codecs: []string{"opus", "PCMU", "PCMA", "G722", "telephone-event", "VP8", "H264", "rtx", "red", "CN"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		offer, err := Parse(b)
		if err != nil {
			wantStatus(t, err, statusBadRequest)
			return
		}
		streams, err := OfferStreams(offer, trunk)
		if err != nil {
			wantStatus(t, err, statusNotAcceptableHere)
			return
		}
		var trunkOrigin, pbxOrigin, browserOrigin Origin
		po, err := PlainOffer(&trunkOrigin, streams, localPlain(len(streams)))
		if err != nil {
			t.Fatalf("PlainOffer: %v", err)
		}
		plainOffer := reparse(t, po)
		pa := reparse(t, syntheticPBXAnswer(t, &pbxOrigin, plainOffer))
		answerStreams, err := AnswerStreams(offer, pa)
		if err != nil {
			t.Fatalf("AnswerStreams: %v", err)
		}
		var answer *Description
		if offer.IsWebRTC() {
			answer, err = WebRTCAnswer(&browserOrigin, offer, answerStreams, localWebRTC())
		} else {
			local := localPlain(len(answerStreams))
			for i := range local {
				if c, ok := SelectCrypto(offer.Media[i].Crypto); ok && isSecureProto(offer.Media[i].Proto) {
					local[i].Crypto = &Crypto{Suite: c.Suite, Key: make([]byte, cryptoKeySizes[c.Suite])}
				}
			}
			answer, err = PlainAnswer(&browserOrigin, offer, answerStreams, local)
		}
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		final := reparse(t, answer)
		if len(final.Media) != len(offer.Media) {
			t.Fatalf("answer has %d m-lines, offer %d", len(final.Media), len(offer.Media))
		}
		strait := map[string]bool{"203.0.113.10": true, "2001:db8::10": true}
		for _, m := range final.Media {
			if !strait[m.Address] {
				t.Fatalf("answer carries address %q", m.Address)
			}
			for _, c := range m.Candidates {
				if !strait[c.Address] {
					t.Fatalf("answer carries candidate %v", c)
				}
			}
		}
	})
}

// reparse marshals d and parses the result, which must succeed.
func reparse(t *testing.T, d *Description) *Description {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	d2, err := Parse(b)
	if err != nil {
		t.Fatalf("built description does not parse: %v\n%s", err, b)
	}
	return d2
}

// syntheticPBXAnswer answers a plain offer as a PBX would: the first media
// codec of every stream it can carry, plus telephone-event at its rate.
func syntheticPBXAnswer(t *testing.T, o *Origin, offer *Description) *Description {
	t.Helper()
	streams, err := OfferStreams(offer, Policy{Codecs: []string{"opus", "PCMU", "PCMA", "G722", "telephone-event", "VP8", "H264"}})
	if err != nil {
		t.Fatalf("PBX: OfferStreams of Strait's offer: %v", err)
	}
	local := make([]LocalPlain, len(streams))
	for i := range streams {
		local[i].RTP = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.10"), uint16(10000+2*i))
		if streams[i].Rejected {
			continue
		}
		var keep []Codec
		for _, c := range streams[i].Codecs {
			if !c.auxiliary() {
				keep = append(keep, c)
				if te, ok := TelephoneEvent(streams[i].Codecs, c.ClockRate); ok {
					keep = append(keep, te)
				}
				break
			}
		}
		streams[i].Codecs = keep
	}
	d, err := PlainAnswer(o, offer, streams, local)
	if err != nil {
		t.Fatalf("PBX: PlainAnswer: %v", err)
	}
	return d
}

package sdp

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, b []byte) *Description {
	t.Helper()
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return d
}

func mustParseFile(t testing.TB, name string) *Description {
	t.Helper()
	return mustParse(t, mustRead(t, name))
}

func codecNames(cs []Codec) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

func TestParseJsSIPChromeOffer(t *testing.T) {
	d := mustParseFile(t, "jssip_chrome156_offer.sdp")
	if d.Origin != (Origin{Username: "-", SessionID: 4305195749897154653, Version: 2, Address: "127.0.0.1"}) {
		t.Errorf("origin = %+v", d.Origin)
	}
	if !reflect.DeepEqual(d.Bundle, []string{"0"}) || d.ICELite || !d.IsWebRTC() {
		t.Errorf("bundle %v, ice-lite %v, webrtc %v", d.Bundle, d.ICELite, d.IsWebRTC())
	}
	if len(d.Media) != 1 {
		t.Fatalf("%d media", len(d.Media))
	}
	m := d.Media[0]
	if m.Kind != KindAudio || m.Port != 41319 || m.Proto != "UDP/TLS/RTP/SAVPF" || m.Address != "127.0.0.1" {
		t.Errorf("m-line: %v %d %s %s", m.Kind, m.Port, m.Proto, m.Address)
	}
	if m.RTCPPort != 9 || m.RTCPAddress != "0.0.0.0" || m.OldHold || m.Direction != SendRecv || m.Mid != "0" {
		t.Errorf("rtcp %d %s, hold %v, dir %v, mid %q", m.RTCPPort, m.RTCPAddress, m.OldHold, m.Direction, m.Mid)
	}
	wantICE := ICE{Ufrag: "tvyA", Pwd: "gjy+7XCPesMlzxykFSy39poC", Options: []string{"trickle"}}
	if !reflect.DeepEqual(m.ICE, wantICE) {
		t.Errorf("ICE = %+v", m.ICE)
	}
	wantCands := []Candidate{
		{Foundation: "435041104", Component: 1, Transport: "udp", Priority: 2122260223, Address: "127.0.0.1", Port: 41319, Type: "host"},
		{Foundation: "1730269640", Component: 1, Transport: "tcp", Priority: 1518280447, Address: "127.0.0.1", Port: 9, Type: "host", TCPType: "active"},
	}
	if !reflect.DeepEqual(m.Candidates, wantCands) {
		t.Errorf("candidates = %+v", m.Candidates)
	}
	if !m.Candidates[0].Usable() || m.Candidates[1].Usable() {
		t.Error("want the UDP candidate usable and the TCP one not")
	}
	wantFP := Fingerprint{"sha-256", "63:6B:D3:32:5A:80:B9:A5:E4:13:E8:A8:3E:49:97:D4:14:96:2F:1E:9E:44:D6:77:15:B7:18:E6:37:E4:77:66"}
	if m.Fingerprint != wantFP || m.Setup != SetupActpass || !m.RTCPMux || !m.RTCPRsize {
		t.Errorf("fingerprint %v setup %v mux %v rsize %v", m.Fingerprint, m.Setup, m.RTCPMux, m.RTCPRsize)
	}
	wantCodecs := []string{"opus/48000/2", "red/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000", "CN/8000",
		"telephone-event/48000", "telephone-event/8000"}
	if got := codecNames(m.Codecs); !reflect.DeepEqual(got, wantCodecs) {
		t.Errorf("codecs = %v", got)
	}
	opus := m.Codecs[0]
	if opus.PayloadType != 111 || opus.Fmtp != "minptime=10;useinbandfec=1" || !reflect.DeepEqual(opus.RTCPFeedback, []string{"transport-cc"}) {
		t.Errorf("opus = %+v", opus)
	}
	if te, ok := TelephoneEvent(m.Codecs, 8000); !ok || te.PayloadType != 126 {
		t.Errorf("telephone-event/8000 = %+v, %v", te, ok)
	}
	if !reflect.DeepEqual(m.SSRCs, []SSRC{{ID: 3388782666, CNAME: "NGd4smo39FXm1x78"}}) ||
		m.MSID != "78d39833-c477-4b60-8836-277e0a07679e 874936a0-7372-431e-b834-23daeebda988" {
		t.Errorf("ssrcs %+v msid %q", m.SSRCs, m.MSID)
	}
	r, err := d.RemoteWebRTC()
	if err != nil || r.ICE.Ufrag != "tvyA" || r.Fingerprint != wantFP || r.Setup != SetupActpass {
		t.Errorf("RemoteWebRTC = %+v, %v", r, err)
	}
}

func TestParseChromeAVBundleOffer(t *testing.T) {
	d := mustParseFile(t, "chrome_av_bundle_offer.sdp")
	if !reflect.DeepEqual(d.Bundle, []string{"0", "1"}) || len(d.Media) != 2 {
		t.Fatalf("bundle %v, %d media", d.Bundle, len(d.Media))
	}
	a, v := d.Media[0], d.Media[1]
	if a.Kind != KindAudio || v.Kind != KindVideo || v.Mid != "1" || v.Port != a.Port {
		t.Errorf("kinds %v %v, video mid %q port %d", a.Kind, v.Kind, v.Mid, v.Port)
	}
	var mdns, srflx *Candidate
	for i, c := range a.Candidates {
		switch {
		case c.MDNS():
			mdns = &a.Candidates[i]
		case c.Type == "srflx":
			srflx = &a.Candidates[i]
		}
	}
	if mdns == nil || mdns.Usable() || !strings.HasSuffix(mdns.Address, ".local") {
		t.Errorf("mDNS candidate = %+v", mdns)
	}
	if srflx == nil || srflx.RelatedAddress != "192.0.2.15" || srflx.RelatedPort != 52110 {
		t.Errorf("srflx candidate = %+v", srflx)
	}
	want := []string{"VP8/90000", "rtx/90000", "H264/90000", "rtx/90000", "AV1/90000", "rtx/90000"}
	if got := codecNames(v.Codecs); !reflect.DeepEqual(got, want) {
		t.Errorf("video codecs = %v", got)
	}
	if fb := v.Codecs[0].RTCPFeedback; !reflect.DeepEqual(fb, []string{"goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"}) {
		t.Errorf("VP8 rtcp-fb = %v", fb)
	}
	if len(v.SSRCs) != 2 {
		t.Errorf("video ssrcs = %+v", v.SSRCs)
	}
}

func TestParseFirefoxOffer(t *testing.T) {
	d := mustParseFile(t, "firefox_offer.sdp")
	m := d.Media[0]
	// Session-level fingerprint and ice-options apply to the section.
	if m.Fingerprint.IsZero() || m.Fingerprint != d.Fingerprint {
		t.Errorf("fingerprint %v, session %v", m.Fingerprint, d.Fingerprint)
	}
	if !reflect.DeepEqual(m.ICE, ICE{Ufrag: "8f3a2b1c", Pwd: "6bc4d2a1ff0e8a3b9c7d5e4f2a1b0c9d", Options: []string{"trickle"}}) {
		t.Errorf("ICE = %+v", m.ICE)
	}
	// c=0.0.0.0 with ICE means "no candidates yet", not hold.
	if m.OldHold || m.Direction != SendRecv || d.OnHold() {
		t.Errorf("hold %v dir %v", m.OldHold, m.Direction)
	}
	if got := codecNames(m.Codecs); !reflect.DeepEqual(got, []string{"opus/48000/2", "G722/8000/1", "PCMU/8000", "PCMA/8000", "telephone-event/8000"}) {
		t.Errorf("codecs = %v", got)
	}
	if m.Codecs[4].Fmtp != "0-15" || m.Codecs[1].Channels != 1 {
		t.Errorf("codecs = %+v", m.Codecs)
	}
	if _, err := d.RemoteWebRTC(); err != nil {
		t.Error(err)
	}
}

func TestParseAsteriskOffer(t *testing.T) {
	d := mustParseFile(t, "asterisk_offer.sdp")
	m := d.Media[0]
	if d.IsWebRTC() || m.Proto != "RTP/AVP" || m.Ptime != 20 || m.MaxPtime != 150 || m.Direction != SendRecv {
		t.Errorf("%+v", m)
	}
	if got, ok := m.RemoteRTP(); !ok || got != netip.MustParseAddrPort("198.51.100.10:10000") {
		t.Errorf("RemoteRTP = %v, %v", got, ok)
	}
	if got, ok := m.RemoteRTCP(); !ok || got != netip.MustParseAddrPort("198.51.100.10:10001") {
		t.Errorf("RemoteRTCP = %v, %v", got, ok)
	}
	if _, err := d.RemoteWebRTC(); !errors.Is(err, ErrUnacceptable) {
		t.Errorf("RemoteWebRTC on a plain offer: %v", err)
	}
}

func TestParseFreeSWITCHSAVPOffer(t *testing.T) {
	d := mustParseFile(t, "freeswitch_savp_offer.sdp")
	m := d.Media[0]
	if len(m.Crypto) != 6 {
		t.Fatalf("%d crypto lines", len(m.Crypto))
	}
	for _, c := range m.Crypto {
		if len(c.Key) != cryptoKeySizes[c.Suite] {
			t.Errorf("%s: %d key bytes", c.Suite, len(c.Key))
		}
	}
	if m.Crypto[5].Lifetime != 1<<31 {
		t.Errorf("lifetime = %d", m.Crypto[5].Lifetime)
	}
	c, ok := SelectCrypto(m.Crypto)
	if !ok || c.Tag != 5 || c.Suite != "AES_CM_128_HMAC_SHA1_80" {
		t.Errorf("SelectCrypto = %+v, %v", c, ok)
	}
	if got, ok := m.RemoteRTCP(); !ok || got != netip.MustParseAddrPort("198.51.100.20:24577") {
		t.Errorf("RemoteRTCP = %v, %v", got, ok)
	}
}

func TestParseHold(t *testing.T) {
	old := mustParseFile(t, "pbx_oldhold_offer.sdp")
	if m := old.Media[0]; !m.OldHold || m.Direction != SendOnly || !old.OnHold() {
		t.Errorf("old-style hold: OldHold %v, direction %v", m.OldHold, m.Direction)
	}
	if _, ok := old.Media[0].RemoteRTP(); ok {
		t.Error("RemoteRTP of c=0.0.0.0 should not be usable")
	}
	so := mustParseFile(t, "pbx_sendonly_offer.sdp")
	if m := so.Media[0]; m.OldHold || m.Direction != SendOnly || !so.OnHold() {
		t.Errorf("sendonly hold: OldHold %v, direction %v", m.OldHold, m.Direction)
	}
	if mustParseFile(t, "asterisk_offer.sdp").OnHold() {
		t.Error("sendrecv offer reads as hold")
	}
	// recvonly with c=0.0.0.0 folds to inactive.
	in := mustParse(t, []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n"))
	if in.Media[0].Direction != Inactive {
		t.Errorf("recvonly + c=0.0.0.0 = %v", in.Media[0].Direction)
	}
}

func TestParseT38(t *testing.T) {
	d := mustParseFile(t, "pbx_t38_reoffer.sdp")
	if len(d.Media) != 2 {
		t.Fatalf("%d media", len(d.Media))
	}
	img := d.Media[1]
	if img.Kind != KindOther || img.Type != "image" || img.Proto != "udptl" || !reflect.DeepEqual(img.Formats, []string{"t38"}) || img.Codecs != nil {
		t.Errorf("image section = %+v", img)
	}
	if !d.Media[0].Rejected() || img.Rejected() {
		t.Error("want audio rejected and image active")
	}
}

func TestParseLenient(t *testing.T) {
	// LF line ends, no final line break, malformed candidate, ptime with
	// a fraction, dynamic payload type without rtpmap.
	d := mustParse(t, []byte("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"+
		"m=audio 4000 RTP/AVP 0 97\na=candidate:garbage\na=ptime:20.0\na=rtpmap:0 PCMU/8000"))
	m := d.Media[0]
	if len(m.Candidates) != 0 || m.Ptime != 20 || len(m.Codecs) != 1 || m.Codecs[0].Name != "PCMU" {
		t.Errorf("%+v", m)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	tests := map[string]string{
		"empty":             "",
		"garbage":           "hello world",
		"no version":        "o=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n",
		"bad port":          head + "m=audio 99999 RTP/AVP 0\r\n",
		"bad payload type":  head + "m=audio 4000 RTP/AVP x\r\n",
		"bad rtpmap":        head + "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n",
		"bad fmtp":          head + "m=audio 4000 RTP/AVP 0\r\na=fmtp:x 0-16\r\n",
		"bad fingerprint":   head + "m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:sha-256 AB:CD\r\n",
		"bad setup":         head + "m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=setup:sideways\r\n",
		"short crypto key":  head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
		"bad crypto method": head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 uri:x\r\n",
		"bad rtcp":          head + "m=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
		"bad mid":           head + "m=audio 4000 RTP/AVP 0\r\na=mid:a/b\r\n",
		"no connection":     "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
		"NUL":               head + "m=audio 4000 RTP/AVP 0\r\na=mid:\x00\r\n",
		"bare CR":           head + "m=audio 4000 RTP/AVP 0\r\na=mid:a\rb\r\n",
		"too large":         head + strings.Repeat("a=x\r\n", maxDescriptionSize/5),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(in))
			var e *Error
			if !errors.As(err, &e) || e.StatusCode() != 400 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error = %v, want a 400 *Error wrapping ErrMalformed", err)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.sdp")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			d := mustParseFile(t, filepath.Base(f))
			b, err := d.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			d2 := mustParse(t, b)
			if !reflect.DeepEqual(d, d2) {
				t.Errorf("round trip differs:\n%+v\n%+v\n%s", d, d2, b)
			}
		})
	}
}

func TestParseCrypto(t *testing.T) {
	key30 := "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz" // 30 bytes
	tests := []struct {
		in        string
		want      Crypto
		supported bool
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30,
			Crypto{Tag: 1, Suite: "AES_CM_128_HMAC_SHA1_80"}, true},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|2^20|1:4",
			Crypto{Tag: 2, Suite: "AES_CM_128_HMAC_SHA1_32", Lifetime: 1 << 20, MKI: 1, MKILength: 4}, false},
		{"3 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:4",
			Crypto{Tag: 3, Suite: "AES_CM_128_HMAC_SHA1_80", MKI: 1, MKILength: 4}, false},
		{"4 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=1 UNENCRYPTED_SRTCP",
			Crypto{Tag: 4, Suite: "AES_CM_128_HMAC_SHA1_80", Params: []string{"KDR=1", "UNENCRYPTED_SRTCP"}}, false},
		{"5 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30,
			Crypto{Tag: 5, Suite: "AES_CM_128_HMAC_SHA1_80"}, true},
		{"7 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw", // unpadded
			Crypto{Tag: 7, Suite: "AEAD_AES_128_GCM"}, true},
		{"6 SOME_FUTURE_SUITE inline:AAAA",
			Crypto{Tag: 6, Suite: "SOME_FUTURE_SUITE"}, false},
	}
	for _, tt := range tests {
		c, err := parseCrypto(tt.in)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		supported, key := c.Supported(), c.Key
		c.Key = nil
		if !reflect.DeepEqual(c, tt.want) || supported != tt.supported {
			t.Errorf("%q: %+v supported %v", tt.in, c, supported)
		}
		c.Key = key
		if again, err := parseCrypto(c.String()); err != nil || !reflect.DeepEqual(again, c) {
			t.Errorf("%q: String %q parses to %+v, %v", tt.in, c.String(), again, err)
		}
	}
}

package sdp

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// codec builds a Codec from "pt name/rate[/ch][;fmtp]".
func codec(s string) Codec {
	var c Codec
	spec, fmtp, _ := strings.Cut(s, ";")
	var enc string
	if _, err := fmt.Sscanf(spec, "%d %s", &c.PayloadType, &enc); err != nil {
		panic(s)
	}
	parts := strings.Split(enc, "/")
	c.Name = parts[0]
	fmt.Sscan(parts[1], &c.ClockRate)
	if len(parts) == 3 {
		fmt.Sscan(parts[2], &c.Channels)
	}
	c.Fmtp = fmtp
	return c
}

func codecs(specs ...string) []Codec {
	var out []Codec
	for _, s := range specs {
		out = append(out, codec(s))
	}
	return out
}

// brief renders codecs as "pt name/rate[/ch][;fmtp]" for comparison.
func brief(cs []Codec) []string {
	var out []string
	for _, c := range cs {
		s := fmt.Sprintf("%d %s", c.PayloadType, c)
		if c.Fmtp != "" {
			s += ";" + c.Fmtp
		}
		out = append(out, s)
	}
	return out
}

var chromeAudio = codecs("111 opus/48000/2;minptime=10;useinbandfec=1", "63 red/48000/2;111/111", "9 G722/8000",
	"0 PCMU/8000", "8 PCMA/8000", "13 CN/8000", "110 telephone-event/48000", "126 telephone-event/8000")

var chromeVideo = codecs("96 VP8/90000", "97 rtx/90000;apt=96", "102 H264/90000;packetization-mode=1",
	"103 rtx/90000;apt=102")

func TestPolicyFilter(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		offered []Codec
		want    []string
	}{
		{"default policy keeps offerer order, telephone-event at 8000 only", DefaultPolicy(), chromeAudio,
			[]string{"9 G722/8000", "0 PCMU/8000", "8 PCMA/8000", "126 telephone-event/8000"}},
		{"opus allowed brings telephone-event/48000", Policy{Codecs: []string{"opus", "PCMU", "telephone-event"}}, chromeAudio,
			[]string{"111 opus/48000/2;minptime=10;useinbandfec=1", "0 PCMU/8000", "110 telephone-event/48000", "126 telephone-event/8000"}},
		{"red kept with what it protects", Policy{Codecs: []string{"opus", "red"}}, chromeAudio,
			[]string{"111 opus/48000/2;minptime=10;useinbandfec=1", "63 red/48000/2;111/111"}},
		{"red dropped without it", Policy{Codecs: []string{"PCMU", "red", "CN"}}, chromeAudio,
			[]string{"0 PCMU/8000", "13 CN/8000"}},
		{"names compare case-insensitively", Policy{Codecs: []string{"pcma", "TELEPHONE-EVENT"}}, chromeAudio,
			[]string{"8 PCMA/8000", "126 telephone-event/8000"}},
		{"telephone-event alone is nothing", Policy{Codecs: []string{"telephone-event"}}, chromeAudio, nil},
		{"no common codec", Policy{Codecs: []string{"G729"}}, chromeAudio, nil},
		{"rtx follows its codec", Policy{Codecs: []string{"VP8", "rtx"}}, chromeVideo,
			[]string{"96 VP8/90000", "97 rtx/90000;apt=96"}},
		{"rtx dropped unless allowed", Policy{Codecs: []string{"H264"}}, chromeVideo,
			[]string{"102 H264/90000;packetization-mode=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := brief(tt.policy.Filter(tt.offered)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAnswerCodecs(t *testing.T) {
	tests := []struct {
		name            string
		offered, chosen []Codec
		want            []string
	}{
		{"answer uses the offer's numbering and the answerer's fmtp", chromeAudio,
			codecs("0 PCMU/8000", "101 telephone-event/8000;0-15"),
			[]string{"0 PCMU/8000", "126 telephone-event/8000;0-15"}},
		{"answerer's order", chromeAudio, codecs("8 PCMA/8000", "0 PCMU/8000"),
			[]string{"8 PCMA/8000", "0 PCMU/8000"}},
		{"opus first", chromeAudio, codecs("0 PCMU/8000", "96 opus/48000/2", "97 telephone-event/48000"),
			[]string{"111 opus/48000/2;minptime=10;useinbandfec=1", "0 PCMU/8000", "110 telephone-event/48000"}},
		{"telephone-event without a codec at its rate is dropped", chromeAudio,
			codecs("0 PCMU/8000", "97 telephone-event/48000"), []string{"0 PCMU/8000"}},
		{"nothing in common", chromeAudio, codecs("18 G729/8000"), nil},
		{"rtx matched through what it protects", chromeVideo,
			codecs("100 H264/90000;packetization-mode=1", "101 rtx/90000;apt=100"),
			[]string{"102 H264/90000;packetization-mode=1", "103 rtx/90000;apt=102"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := brief(AnswerCodecs(tt.offered, tt.chosen)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAnswerCodecsRTCPFeedback(t *testing.T) {
	offered := codecs("96 VP8/90000")
	offered[0].RTCPFeedback = []string{"nack", "nack pli", "transport-cc"}
	chosen := codecs("100 VP8/90000")
	chosen[0].RTCPFeedback = []string{"nack pli", "goog-remb"}
	got := AnswerCodecs(offered, chosen)
	if len(got) != 1 || !reflect.DeepEqual(got[0].RTCPFeedback, []string{"nack pli"}) {
		t.Errorf("got %+v", got)
	}
}

func TestSharedCodecs(t *testing.T) {
	browser := codecs("0 PCMU/8000", "8 PCMA/8000", "126 telephone-event/8000")
	trunk := codecs("101 telephone-event/8000", "0 PCMU/8000")
	a, b := SharedCodecs(browser, trunk)
	if got := brief(a); !reflect.DeepEqual(got, []string{"0 PCMU/8000", "126 telephone-event/8000"}) {
		t.Errorf("browser leg: %q", got)
	}
	if got := brief(b); !reflect.DeepEqual(got, []string{"0 PCMU/8000", "101 telephone-event/8000"}) {
		t.Errorf("trunk leg: %q", got)
	}
}

func TestNewStream(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		kind   Kind
		want   []string
	}{
		{"trunk audio", DefaultPolicy(), KindAudio,
			[]string{"0 PCMU/8000", "8 PCMA/8000", "9 G722/8000", "101 telephone-event/8000;0-16"}},
		{"browser audio", WebRTCPolicy(), KindAudio,
			[]string{"111 opus/48000/2;minptime=10;useinbandfec=1", "9 G722/8000", "0 PCMU/8000", "8 PCMA/8000",
				"110 telephone-event/48000;0-16", "101 telephone-event/8000;0-16"}},
		{"no video codec allowed", DefaultPolicy(), KindVideo, nil},
		{"video", Policy{Codecs: []string{"H264", "VP8", "PCMU"}}, KindVideo,
			[]string{"102 H264/90000;level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "96 VP8/90000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.policy.NewStream(tt.kind)
			if got := brief(s.Codecs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
			if s.Rejected != (tt.want == nil) || s.Kind != tt.kind || s.Direction != SendRecv {
				t.Errorf("stream = %+v", s)
			}
		})
	}
}

func TestOfferStreamsNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		policy   Policy
		want     [][]string // per m-line; nil = rejected
		wantCode int
	}{
		{"browser offer to a trunk", "jssip_chrome156_offer.sdp", DefaultPolicy(),
			[][]string{{"9 G722/8000", "0 PCMU/8000", "8 PCMA/8000", "126 telephone-event/8000"}}, 0},
		{"video rejected, m-line count kept", "chrome_av_bundle_offer.sdp", DefaultPolicy(),
			[][]string{{"9 G722/8000", "0 PCMU/8000", "8 PCMA/8000", "126 telephone-event/8000"}, nil}, 0},
		{"video kept when allowed", "chrome_av_bundle_offer.sdp", Policy{Codecs: []string{"PCMU", "VP8"}},
			[][]string{{"0 PCMU/8000"}, {"96 VP8/90000"}}, 0},
		{"PBX offer to a browser drops CN", "freeswitch_savp_offer.sdp", WebRTCPolicy(),
			[][]string{{"9 G722/8000", "0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000;0-15"}}, 0},
		{"no common codec", "jssip_chrome156_offer.sdp", Policy{Codecs: []string{"G729", "telephone-event"}}, nil, 488},
		{"T.38 only", "pbx_t38_reoffer.sdp", DefaultPolicy(), nil, 488},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParseFile(t, tt.file)
			streams, err := OfferStreams(d, tt.policy)
			if tt.wantCode != 0 {
				var e *Error
				if !errors.As(err, &e) || e.StatusCode() != tt.wantCode || !errors.Is(err, ErrNoCommonCodec) {
					t.Fatalf("err = %v, want status %d", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(streams) != len(d.Media) {
				t.Fatalf("%d streams for %d m-lines", len(streams), len(d.Media))
			}
			for i, s := range streams {
				got := brief(s.Codecs)
				if s.Rejected != (tt.want[i] == nil) || !reflect.DeepEqual(got, tt.want[i]) {
					t.Errorf("stream %d: rejected %v codecs %q, want %q", i, s.Rejected, got, tt.want[i])
				}
			}
		})
	}
}

func TestDirections(t *testing.T) {
	for _, tt := range []struct{ offer, far, want Direction }{
		{SendRecv, SendRecv, SendRecv},
		{SendOnly, SendRecv, RecvOnly}, // held: answer recvonly
		{SendOnly, RecvOnly, RecvOnly},
		{Inactive, SendRecv, Inactive},
		{RecvOnly, SendRecv, SendOnly},
		{SendRecv, SendOnly, SendOnly}, // far end holds through Strait
	} {
		if got := tt.far.And(tt.offer.Reverse()); got != tt.want {
			t.Errorf("offer %v, far %v: answer %v, want %v", tt.offer, tt.far, got, tt.want)
		}
	}
}

func TestDTLSRoles(t *testing.T) {
	for _, tt := range []struct {
		offer   Setup
		current DTLSRole
		want    DTLSRole
	}{
		{SetupActpass, RoleUnknown, RoleClient},
		{SetupActpass, RoleServer, RoleServer}, // re-offer keeps the association
		{SetupActive, RoleUnknown, RoleServer},
		{SetupPassive, RoleServer, RoleClient},
		{SetupNone, RoleUnknown, RoleClient},
	} {
		if got := DTLSRoleForOffer(tt.offer, tt.current); got != tt.want {
			t.Errorf("offer %v current %v: %v, want %v", tt.offer, tt.current, got, tt.want)
		}
	}
	for _, tt := range []struct {
		answer Setup
		want   DTLSRole
		err    bool
	}{
		{SetupActive, RoleServer, false},
		{SetupPassive, RoleClient, false},
		{SetupNone, RoleClient, false},
		{SetupActpass, RoleUnknown, true},
	} {
		got, err := DTLSRoleFromAnswer(tt.answer)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("answer %v: %v, %v", tt.answer, got, err)
		}
	}
}

package b2bua

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

func TestUserOf(t *testing.T) {
	for in, want := range map[string]string{"echo": "echo", " 1000 ": "1000", "sip:bob@example.com": "bob",
		"sip:+15551234@trunk;user=phone": "+15551234", "SIP:carol@x": "carol"} {
		if got, err := userOf(in); err != nil || got != want {
			t.Errorf("userOf(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "sip:example.com", "a b", "bob@x", "<sip:x@y>", strings.Repeat("1", 200)} {
		if got, err := userOf(bad); err == nil {
			t.Errorf("userOf(%q) = %q", bad, got)
		}
	}
}

// FuzzUserOf: an accepted callee is a plain user part.
func FuzzUserOf(f *testing.F) {
	for _, s := range []string{"echo", "sip:bob@example.com", "sips:x@y:5061;transport=tls", "sip:@", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := userOf(s)
		if err == nil && (u == "" || strings.ContainsAny(u, " \t\r\n<>\"@:;,")) {
			t.Fatalf("userOf(%q) = %q", s, u)
		}
	})
}

func TestReferTo(t *testing.T) {
	st, err := sipnet.New(sipnet.Config{Host: "203.0.113.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := &Engine{st: st, cfg: Config{Upstreams: testUpstreams(t, "sip:198.51.100.7:5070")}}
	pbx := &leg{kind: kindPlain}
	if got := e.referTo("<sip:carol@192.0.2.9:8080;transport=ws>", nil, pbx); got != "<sip:carol@198.51.100.7:5070>" {
		t.Errorf("to the PBX: %s", got)
	}
	if got := e.referTo("sip:carol@192.0.2.9", nil, &leg{kind: kindWebRTC}); got != "<sip:carol@203.0.113.1>" {
		t.Errorf("to a browser: %s", got)
	}
	if got := e.referTo("garbage", nil, pbx); got != "garbage" {
		t.Errorf("garbage: %s", got)
	}
}

// FuzzReferTo: a rewritten Refer-To never carries the referrer's host.
func FuzzReferTo(f *testing.F) {
	st, err := sipnet.New(sipnet.Config{Host: "203.0.113.1"})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	e := &Engine{st: st, cfg: Config{Upstreams: testUpstreams(f, "sip:198.51.100.7:5070")}}
	for _, s := range []string{"<sip:carol@192.0.2.9>", "sip:x@y?Replaces=abc", "<sip:@>", "\"Carol\" <sip:carol@192.0.2.9;lr>;p=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := e.referTo(v, nil, &leg{kind: kindPlain})
		if got != v && !strings.HasSuffix(got, "@198.51.100.7:5070>") {
			t.Fatalf("referTo(%q) = %q", v, got)
		}
	})
}

func TestMapFailure(t *testing.T) {
	for in, want := range map[int]int{486: 486, 600: 486, 606: 488, 488: 488, 302: 480, 500: 503, 503: 503, 504: 408,
		404: 404, 487: 487, 603: 603, 480: 480, 430: 430} {
		if got := mapFailure(in); got != want {
			t.Errorf("mapFailure(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestErrorStatus(t *testing.T) {
	err := error(sipError(486, "", errors.New("busy")))
	if c, _ := statusOf(err); c != 486 || status.Code(err) != codes.Aborted {
		t.Errorf("486: %d %v", c, status.Code(err))
	}
	_, perr := sdp.Parse([]byte("nonsense"))
	if c, _ := statusOf(perr); c != 400 {
		t.Errorf("SDP parse error: %d", c)
	}
	if c, _ := statusOf(errors.New("x")); c != 500 {
		t.Errorf("plain error: %d", c)
	}
}

func TestHeaderTokens(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "x"})
	req.AppendHeader(sip.NewHeader("Supported", "replaces, Timer"))
	req.AppendHeader(sip.NewHeader("Allow", "INVITE,ACK, info"))
	if !supportsTimer(req) || !allowsInfo(req) {
		t.Fatal("tokens not found")
	}
	if _, err := sdpBody([]byte("v=0"), "text/plain"); err == nil {
		t.Fatal("a text/plain body was taken for SDP")
	}
	if d, err := sdpBody(nil, ""); d != nil || err != nil {
		t.Fatal("no body is no offer")
	}
}

// FuzzHeaderTokens: token scanning never panics and finds what is there.
func FuzzHeaderTokens(f *testing.F) {
	f.Add("timer", "INFO")
	f.Add(",,,", " info ,")
	f.Fuzz(func(t *testing.T, supported, allowv string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "x"})
		req.AppendHeader(sip.NewHeader("Supported", supported))
		req.AppendHeader(sip.NewHeader("Allow", allowv))
		if supportsTimer(req) != strings.Contains(strings.ToLower(supported), "timer") && supportsTimer(req) {
			t.Fatal("timer found where there is none")
		}
		allowsInfo(req)
	})
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct {
		u    sip.Uri
		tr   string
		want string
	}{
		{sip.Uri{Host: "10.0.0.1"}, "UDP", "10.0.0.1:5060"},
		{sip.Uri{Host: "10.0.0.1"}, "TLS", "10.0.0.1:5061"},
		{sip.Uri{Host: "[::1]", Port: 5070}, "TCP", "[::1]:5070"},
	} {
		if got := hostPort(tc.u, tc.tr); got != tc.want {
			t.Errorf("hostPort(%v) = %s, want %s", tc.u, got, tc.want)
		}
	}
}

func testUpstreams(t testing.TB, uris ...string) *upstream.Set {
	t.Helper()
	var specs []upstream.Spec
	for _, u := range uris {
		sp, err := upstream.ParseSpec(u)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, sp)
	}
	return upstream.NewSet(upstream.Config{Specs: specs})
}

// Issue 8 item 8: an upstream is its address, port and transport, not its
// IP alone; --sip-trust ranges are let in besides; the rest is refused
// and counted.
func TestSideOf(t *testing.T) {
	e := &Engine{st: testStack(t), log: slog.New(slog.DiscardHandler), cfg: Config{
		Upstreams: testUpstreams(t, "sip:192.0.2.1:5060", "sip:192.0.2.2:5070;transport=tcp", "sip:[2001:db8::1]:5060"),
		Trust:     []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}}
	for _, tc := range []struct {
		transport, src string
		want           side
	}{
		{"UDP", "192.0.2.1:5060", fromUpstream},
		{"UDP", "192.0.2.1:5061", 0}, // another process on the PBX's host
		{"TCP", "192.0.2.1:5060", 0}, // another transport
		{"TCP", "192.0.2.2:41234", fromUpstream},
		{"UDP", "192.0.2.2:5070", 0},
		{"UDP", "[2001:db8::1]:5060", fromUpstream},
		{"UDP", "10.1.2.3:5060", fromUpstream}, // a trusted range
		{"UDP", "10.2.0.1:5060", 0},
		{"TLS", "192.0.2.1:5061", 0}, // no TLS connection, no identity
		{"WS", "198.51.100.9:40000", fromBrowser},
	} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice", Host: "strait"})
		req.SetTransport(tc.transport)
		req.SetSource(tc.src)
		got, ok := e.sideOf(req)
		if got != tc.want || ok != (tc.want != 0) {
			t.Errorf("sideOf(%s %s) = %v %v, want %v", tc.transport, tc.src, got, ok, tc.want)
		}
	}
}

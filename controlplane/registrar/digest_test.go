package registrar

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// request builds a request of method to ruri carrying hdr: value.
func request(t testing.TB, method sip.RequestMethod, ruri, hdr, value string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(method, u)
	if value != "" {
		req.AppendHeader(sip.NewHeader(hdr, value))
	}
	return req
}

// answerChallenge computes credentials for challenge number i of d's
// challenge (0 is the preferred algorithm).
func answerChallenge(t testing.TB, d *Digest, i int, user, pw, method, uri string) *digest.Credentials {
	t.Helper()
	chal, err := digest.ParseChallenge(d.Challenges(false)[i])
	if err != nil {
		t.Fatal(err)
	}
	cr, err := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: user, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

func credentials(t testing.TB, d *Digest, user, pw, method, uri string) string {
	t.Helper()
	return answerChallenge(t, d, 0, user, pw, method, uri).String()
}

func check(t testing.TB, d *Digest, method sip.RequestMethod, ruri, value string) Result {
	t.Helper()
	return d.Check(request(t, method, ruri, "Authorization", value), "Authorization")
}

func TestDigest(t *testing.T) {
	d := NewDigest("strait", map[string]string{"alice": "secret"})
	const reg = "sip:127.0.0.1"
	for _, c := range []struct {
		name   string
		method sip.RequestMethod
		ruri   string
		value  string
		want   Verdict
		reason string
	}{
		{"right password (SHA-256, RFC 8760)", sip.REGISTER, reg, credentials(t, d, "alice", "secret", "REGISTER", reg), Granted, ""},
		{"MD5 (the last challenge, what JsSIP answers)", sip.REGISTER, reg, answerChallenge(t, d, 1, "alice", "secret", "REGISTER", reg).String(), Granted, ""},
		{"wrong password", sip.REGISTER, reg, credentials(t, d, "alice", "wrong", "REGISTER", reg), Denied, ReasonWrongPassword},
		{"unknown user", sip.REGISTER, reg, credentials(t, d, "mallory", "secret", "REGISTER", reg), Denied, ReasonUnknownUser},
		{"another method", sip.INVITE, reg, credentials(t, d, "alice", "secret", "REGISTER", reg), Denied, ReasonWrongPassword},
		{"another Request-URI", sip.INVITE, "sip:bob@127.0.0.1", credentials(t, d, "alice", "secret", "INVITE", "sip:echo@127.0.0.1"), Denied, ReasonURI},
		{"same URI, other spelling", sip.INVITE, "sip:echo@127.0.0.1", credentials(t, d, "alice", "secret", "INVITE", "sip:echo@127.0.0.1;transport=udp"), Granted, ""},
		{"another instance's nonce", sip.REGISTER, reg, credentials(t, NewDigest("strait", map[string]string{"alice": "secret"}), "alice", "secret", "REGISTER", reg), Denied, ReasonNonce},
		{"another realm", sip.REGISTER, reg, strings.Replace(credentials(t, d, "alice", "secret", "REGISTER", reg), `realm="strait"`, `realm="other"`, 1), Denied, ReasonRealm},
		{"algorithm not offered", sip.REGISTER, reg, strings.Replace(credentials(t, d, "alice", "secret", "REGISTER", reg), "algorithm=SHA-256", "algorithm=SHA-512", 1), Denied, ReasonAlgorithm},
		{"qop=auth without nc", sip.REGISTER, reg, strings.Replace(credentials(t, d, "alice", "secret", "REGISTER", reg), "nc=00000001", "", 1), Denied, ReasonMalformed},
		{"not digest", sip.REGISTER, reg, "Basic YWxpY2U6c2VjcmV0", Denied, ReasonMalformed},
		{"no credentials", sip.REGISTER, reg, "", Denied, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := check(t, d, c.method, c.ruri, c.value)
			if got.Verdict != c.want || got.Reason != c.reason {
				t.Fatalf("%+v, want verdict %v reason %q", got, c.want, c.reason)
			}
		})
	}
}

// A captured Authorization works once: replayed as is, from anywhere, it
// is refused; the same nonce with a higher count (the client's next
// request) works.
func TestDigestReplay(t *testing.T) {
	d := NewDigest("strait", map[string]string{"alice": "secret"})
	cr := answerChallenge(t, d, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Granted {
		t.Fatalf("first use: %+v", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Denied || r.Reason != ReasonReplay {
		t.Fatalf("replay: %+v", r)
	}
	chal, _ := digest.ParseChallenge(d.Challenges(false)[0])
	chal.Nonce = cr.Nonce
	next, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:x", Username: "alice", Password: "secret", Count: 2})
	if r := check(t, d, sip.REGISTER, "sip:x", next.String()); r.Verdict != Granted {
		t.Fatalf("nc=2 on the same nonce: %+v", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Reason != ReasonReplay {
		t.Fatalf("nc=1 after nc=2: %+v", r)
	}
	// Without qop (RFC 2069) a nonce is good once.
	chal.QOP = nil
	chal.Nonce = strings.Split(strings.Split(d.Challenge(false), `nonce="`)[1], `"`)[0]
	old, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:x", Username: "alice", Password: "secret"})
	if r := check(t, d, sip.REGISTER, "sip:x", old.String()); r.Verdict != Granted {
		t.Fatalf("without qop: %+v", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", old.String()); r.Reason != ReasonReplay {
		t.Fatalf("without qop, again: %+v", r)
	}
}

// RFC 7616 section 3.3: stale=true only for right credentials with a nonce
// that is no longer good (expired, or forgotten by a full store).
func TestDigestStale(t *testing.T) {
	d := NewDigest("strait", map[string]string{"alice": "secret"})
	old := credentials(t, d, "alice", "secret", "REGISTER", "sip:x")
	wrong := credentials(t, d, "alice", "wrong", "REGISTER", "sip:x")
	d.now = func() time.Time { return time.Now().Add(nonceLifetime + time.Minute) }
	if r := check(t, d, sip.REGISTER, "sip:x", old); r.Verdict != Stale {
		t.Fatalf("expired nonce: %+v, want Stale", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", wrong); r.Verdict != Denied {
		t.Fatalf("expired nonce, wrong password: %+v, want Denied", r)
	}
	if !strings.Contains(d.Challenge(true), "stale=true") {
		t.Fatal("stale challenge without stale=true")
	}

	small := NewDigestWith(DigestConfig{Realm: "strait", Users: map[string]string{"alice": "secret"}, Nonces: NewMemoryNonces(2, time.Hour)})
	first := credentials(t, small, "alice", "secret", "REGISTER", "sip:x")
	small.now = func() time.Time { return time.Now().Add(2 * time.Second) } // later nonces, later issue times
	for range 3 {
		if r := check(t, small, sip.REGISTER, "sip:x", credentials(t, small, "alice", "secret", "REGISTER", "sip:x")); r.Verdict != Granted {
			t.Fatalf("fill: %+v", r)
		}
	}
	if r := check(t, small, sip.REGISTER, "sip:x", first); r.Verdict != Stale {
		t.Fatalf("a nonce issued before the forgotten ones: %+v, want Stale (never Granted)", r)
	}
}

func TestChallenges(t *testing.T) {
	d := NewDigest("strait", nil)
	cs := d.Challenges(false)
	// SHA-256 first (RFC 8760 section 2.4: most preferred first); MD5 last,
	// because JsSIP and SIP.js keep only the last challenge header and
	// answer only MD5.
	if len(cs) != 2 || !strings.Contains(cs[0], "algorithm=SHA-256") || !strings.Contains(cs[1], "algorithm=MD5") {
		t.Fatalf("challenges %q: want SHA-256 then MD5", cs)
	}
	for _, c := range cs {
		if !strings.Contains(c, `qop="auth"`) && !strings.Contains(c, "qop=auth") {
			t.Fatalf("challenge without qop=auth: %s", c)
		}
	}
	if n0, n1 := strings.Split(cs[0], "nonce=")[1][:20], strings.Split(cs[1], "nonce=")[1][:20]; n0 != n1 {
		t.Fatalf("one challenge, two nonces: %s %s", n0, n1)
	}
	a, b := d.Challenge(false), d.Challenge(false)
	if strings.Split(a, "nonce=")[1] == strings.Split(b, "nonce=")[1] {
		t.Fatal("two challenges share a nonce")
	}
	if algs, err := ParseAlgorithms([]string{"sha-256"}); err != nil || len(algs) != 1 || algs[0] != SHA256 {
		t.Fatalf("ParseAlgorithms: %v %v", algs, err)
	}
	if _, err := ParseAlgorithms([]string{"SHA-1"}); err == nil {
		t.Fatal("SHA-1 accepted")
	}
}

func TestMemoryNoncesBounded(t *testing.T) {
	s := NewMemoryNonces(100, time.Hour)
	t0 := time.Now()
	for i := range 1000 {
		if s.Use(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond), 1) != NonceFresh {
			t.Fatalf("nonce %d not fresh", i)
		}
		if s.Len() > 100 {
			t.Fatalf("%d nonces remembered, capacity 100", s.Len())
		}
	}
	if s.Use("5", t0.Add(5*time.Millisecond), 1) != NonceForgotten {
		t.Fatal("an evicted nonce was not reported forgotten")
	}
	if s.Use("999", t0.Add(999*time.Millisecond), 1) != NonceReplayed {
		t.Fatal("a remembered nonce's count was accepted twice")
	}
	// Expired entries leave as time passes.
	e := NewMemoryNonces(100, time.Millisecond)
	e.Use("a", time.Now().Add(-time.Second), 1)
	e.Use("b", time.Now(), 1)
	if e.Len() != 1 {
		t.Fatalf("%d nonces remembered, want the expired one gone", e.Len())
	}
}

// FuzzDigestCheck: whatever the header, the check does not panic, and
// nothing is granted without the password (every valid credential in the
// corpus is for a wrong password) or twice.
func FuzzDigestCheck(f *testing.F) {
	d := NewDigest("strait", map[string]string{"alice": "secret"})
	f.Add(credentials(f, d, "alice", "wrong", "REGISTER", "sip:127.0.0.1"), "REGISTER", "sip:127.0.0.1")
	f.Add(answerChallenge(f, d, 1, "alice", "wrong", "INVITE", "sip:echo@x").String(), "INVITE", "sip:echo@x")
	f.Add(`Digest username="alice", realm="strait", nonce="1.2.3", uri="sip:x", response="00", qop=auth, nc=00000001, cnonce="a"`, "INVITE", "sip:x")
	f.Add(`Digest username="alice", realm="strait", nonce="1.2", uri="sip:x", response="00", nc=zz`, "INVITE", "sip:x")
	f.Add(`Basic YWxpY2U6c2VjcmV0`, "REGISTER", "sip:x")
	f.Fuzz(func(t *testing.T, header, method, ruri string) {
		var u sip.Uri
		if sip.ParseUri(ruri, &u) != nil || method == "" {
			return
		}
		req := sip.NewRequest(sip.RequestMethod(method), u)
		req.AppendHeader(sip.NewHeader("Authorization", header))
		if r := d.Check(req, "Authorization"); r.Verdict == Granted {
			t.Fatalf("granted %q for %s %s", header, method, ruri)
		}
	})
}

// Every refusal reason has its strait_auth_failures_total series from the
// start.
func TestReasonsHaveSeries(t *testing.T) {
	have := map[string]bool{}
	for _, r := range metrics.AuthFailureReasons {
		have[r] = true
	}
	for _, r := range []string{ReasonMalformed, ReasonRealm, ReasonAlgorithm, ReasonNonce, ReasonURI, ReasonUnknownUser,
		ReasonWrongPassword, ReasonStale, ReasonReplay, ReasonIdentity, ReasonUpstream} {
		if !have[r] {
			t.Errorf("reason %q is not in metrics.AuthFailureReasons", r)
		}
	}
	if len(have) != 11 {
		t.Errorf("metrics.AuthFailureReasons has %d reasons, registrar 11", len(have))
	}
}

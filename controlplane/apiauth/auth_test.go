package apiauth

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

func TestKeys(t *testing.T) {
	tok, key, err := NewToken("web", "alice", []string{ScopeCall, ScopeUser})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(key, tok) || !strings.HasPrefix(key, "web:call,user:alice:") {
		t.Fatalf("key %q", key)
	}
	k, err := ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ops, opsKey, _ := NewToken("ops", "", []string{ScopeAdmin})
	k2, _ := ParseKey(opsKey)
	recv, recvKey, _ := NewToken("desk", "", []string{"receive:sales"})
	k3, err := ParseKey(recvKey)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Token: "operator-token", Keys: []Key{k, k2, k3}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Check(tok)
	if err != nil || p.User != "alice" || !p.Has(ScopeCall) || p.Has(ScopeCDR) || p.Admin() || !p.Sees("alice", "bob") || p.Sees("bob", "carol") {
		t.Fatalf("%+v %v", p, err)
	}
	if p, err := a.Check(ops); err != nil || !p.Admin() || !p.Has(ScopeCDR) || !p.Sees("x", "y") {
		t.Fatalf("%+v %v", p, err)
	}
	if p, err := a.Check(recv); err != nil || !p.MayReceive("sales") || p.MayReceive("support") || !p.ReceivesAny() || p.Has(ScopeCall) {
		t.Fatalf("%+v %v", p, err)
	}
	if p, err := a.Check("operator-token"); err != nil || !p.Admin() {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"", "operator-token ", tok + "x", "strait_nothing", "a.b.c"} {
		if _, err := a.Check(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	if _, err := a.Authenticate(r); err != ErrNoCredentials {
		t.Fatalf("no header: %v", err)
	}
	r.Header.Set("Authorization", "bearer "+tok)
	if p, err := a.Authenticate(r); err != nil || p.User != "alice" {
		t.Fatalf("lower-case scheme (RFC 9110 section 11.1): %+v %v", p, err)
	}
	if _, err := New(Config{Keys: []Key{k, k}}); err == nil {
		t.Fatal("duplicate key names accepted")
	}
	if p, err := (&Authenticator{}).Authenticate(r); err != nil || !p.Admin() {
		t.Fatalf("no credentials configured: %+v %v", p, err)
	}
}

func TestParseKey(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, err string
	}{
		{"web:call:alice:" + h, ""},
		{"ops:admin::" + h, ""},
		{"desk:receive:sales,cdr::" + h, ""},
		{"web:call::" + h, "needs a user"},
		{"web:fly:alice:" + h, "unknown scope"},
		{"web:call:alice:strait_abc", "SHA-256"},
		{"web:call:al ice:" + h, "bad user"},
		{"web:call", "want NAME"},
		{"w@b:call:alice:" + h, "bad name"},
		{"desk:cdr:receive:x:" + h, "unknown scope"}, // scopes "cdr:receive", user x
	} {
		_, err := ParseKey(tc.in)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestJWT(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a, err := New(Config{Secret: secret, MaxTTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := a.Mint("alice", []string{ScopeCall, ScopeUser}, 10*time.Minute)
	if err != nil || !exp.Equal(now.Add(10*time.Minute)) {
		t.Fatal(err, exp)
	}
	p, err := a.Check(tok)
	if err != nil || p.User != "alice" || !p.Has(ScopeCall) || !p.Has(ScopeUser) || p.Has(ScopeAdmin) || !strings.HasPrefix(p.Name, "jwt:") {
		t.Fatalf("%+v %v", p, err)
	}
	if _, _, err := a.Mint("alice", []string{ScopeCall}, 2*time.Hour); err == nil {
		t.Fatal("minted past MaxTTL")
	}
	if _, _, err := a.Mint("alice", []string{"root"}, time.Minute); err == nil {
		t.Fatal("minted an unknown scope")
	}

	sign := func(c jwt.Claims, m jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(mut func(*Claims)) Claims {
		c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "bob", Audience: jwt.ClaimStrings{Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute))}, Scope: "call"}
		if mut != nil {
			mut(&c)
		}
		return c
	}
	// A backend's own token (any JWT library) passes.
	if p, err := a.Check(sign(claims(nil), jwt.SigningMethodHS256, secret)); err != nil || p.User != "bob" {
		t.Fatalf("backend token: %+v %v", p, err)
	}
	for name, tok := range map[string]string{
		"expired":        sign(claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) }), jwt.SigningMethodHS256, secret),
		"no exp":         sign(claims(func(c *Claims) { c.ExpiresAt = nil }), jwt.SigningMethodHS256, secret),
		"too long-lived": sign(claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(48 * time.Hour)) }), jwt.SigningMethodHS256, secret),
		"other audience": sign(claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"billing"} }), jwt.SigningMethodHS256, secret),
		"no audience":    sign(claims(func(c *Claims) { c.Audience = nil }), jwt.SigningMethodHS256, secret),
		"no scope":       sign(claims(func(c *Claims) { c.Scope = "openid email" }), jwt.SigningMethodHS256, secret),
		"wrong key":      sign(claims(nil), jwt.SigningMethodHS256, []byte("another-secret-another-secret-another")),
		"HS512":          sign(claims(nil), jwt.SigningMethodHS512, secret),
		"alg none":       sign(claims(nil), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"bad sub":        sign(claims(func(c *Claims) { c.Subject = "bob@evil;x" }), jwt.SigningMethodHS256, secret),
		"not yet":        sign(claims(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), jwt.SigningMethodHS256, secret),
		"garbage":        "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
	} {
		if p, err := a.Check(tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
	if _, err := New(Config{Secret: []byte("short")}); err == nil {
		t.Fatal("short secret accepted")
	}
}

// FuzzCheck: any bearer token is a principal or an error, never a panic.
func FuzzCheck(f *testing.F) {
	a, _ := New(Config{Token: "t", Secret: secret})
	tok, _, _ := a.Mint("u", []string{ScopeCall}, time.Minute)
	for _, s := range []string{tok, "t", "strait_x", "a.b.c", "..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := a.Check(s)
		if err == nil && len(p.Scopes) == 0 {
			t.Fatalf("%q: a principal with no scope", s)
		}
	})
}

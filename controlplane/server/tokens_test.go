package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
)

// secretFile writes a JWT secret for a test.
func secretFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(p, []byte("test-secret-test-secret-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Scoped keys and signed tokens: a call goes out as the credential's user
// whatever the body says; a token sees only its user's calls; scopes
// gate records, registrations, minting and /metrics.
func TestScopedTokens(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeCall, apiauth.ScopeUser})
	carol, carolKey, _ := apiauth.NewToken("carol-web", "carol", []string{apiauth.ScopeCall, apiauth.ScopeCDR})
	e := start(t, func(c *config.Config) {
		c.APIToken = "operator"
		c.APIKeys = []string{aliceKey, carolKey}
		c.JWTSecretFile = secretFile(t)
	})
	base := "http://" + e.srv.HTTPAddr()
	do := func(token, method, path, body string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, b
	}
	call := func(token, from string) (int, string) {
		t.Helper()
		offer, _ := json.Marshal(newBrowserMedia(t).Offer)
		body := `{"to":"echo","offer":` + string(offer)
		if from != "" {
			body += `,"from":"` + from + `"`
		}
		code, _, b := do(token, "POST", "/v1/calls", body+"}")
		var created struct{ ID string }
		json.Unmarshal(b, &created)
		return code, created.ID
	}
	caller := func(id string) string {
		t.Helper()
		code, _, b := do("operator", "GET", "/v1/calls/"+id, "")
		var in struct{ Caller string }
		json.Unmarshal(b, &in)
		if code != 200 {
			t.Fatalf("GET call %s: %d %s", id, code, b)
		}
		return in.Caller
	}

	if code, _ := call(alice, "bob"); code != 403 {
		t.Fatalf("alice calling as bob: %d", code)
	}
	code, id := call(alice, "")
	if code != 201 || caller(id) != "alice" {
		t.Fatalf("alice's call: %d, caller %q", code, caller(id))
	}
	code, id2 := call(alice, "alice")
	if code != 201 || caller(id2) != "alice" {
		t.Fatalf("alice naming herself: %d", code)
	}
	if code, id := call("operator", "switchboard"); code != 201 || caller(id) != "switchboard" {
		t.Fatalf("the operator's call as switchboard: %d", code)
	}
	// carol sees none of alice's calls.
	if code, _, b := do(carol, "GET", "/v1/calls", ""); code != 200 || strings.Contains(string(b), id) {
		t.Fatalf("carol's list: %d %s", code, b)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if code, _, _ := do(carol, m, "/v1/calls/"+id, ""); code != 404 {
			t.Fatalf("carol %s alice's call: %d", m, code)
		}
	}
	if code, _, b := do(alice, "GET", "/v1/calls", ""); code != 200 || !strings.Contains(string(b), id) {
		t.Fatalf("alice's list: %d %s", code, b)
	}
	// Scopes.
	for _, tc := range []struct {
		token, method, path, body string
		code                      int
	}{
		{alice, "GET", "/v1/cdrs", "", 403},
		{carol, "GET", "/v1/cdrs", "", 200},
		{alice, "GET", "/v1/registrations", "", 403},
		{alice, "POST", "/v1/tokens", `{"user":"alice","scopes":["admin"]}`, 403},
		{alice, "GET", "/metrics", "", 403},
		{"operator", "GET", "/metrics", "", 200},
		{"", "GET", "/metrics", "", 401},
		{"strait_forged", "GET", "/v1/calls", "", 401},
		{alice + "x", "GET", "/v1/calls", "", 401},
	} {
		code, h, b := do(tc.token, tc.method, tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%.12s %s %s: %d, want %d: %s", tc.token, tc.method, tc.path, code, tc.code, b)
		}
		if code == 403 && tc.path != "/metrics" && !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s %s: 403 without insufficient_scope: %q", tc.method, tc.path, h.Get("WWW-Authenticate"))
		}
		if code == 401 && tc.token != "" && !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s %s: 401 without invalid_token: %q", tc.method, tc.path, h.Get("WWW-Authenticate"))
		}
	}

	// alice's history, a page at a time, once her calls ended.
	for _, c := range []string{id, id2} {
		if code, _, b := do(alice, "DELETE", "/v1/calls/"+c, ""); code != 204 {
			t.Fatalf("alice hangs up: %d %s", code, b)
		}
	}
	var page struct {
		Calls []struct{ ID, Caller string }
		Next  string
	}
	// The records reach the history (in the state store) after the hang up.
	if err := e.srv.History.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	code, _, b := do(alice, "GET", "/v1/history?limit=1", "")
	if json.Unmarshal(b, &page); code != 200 || len(page.Calls) != 1 || page.Calls[0].ID != id2 || page.Next == "" {
		t.Fatalf("history page 1: %d %s", code, b)
	}
	code, _, b = do(alice, "GET", "/v1/history?limit=1&before="+url.QueryEscape(page.Next), "")
	page.Next = ""
	if json.Unmarshal(b, &page); code != 200 || len(page.Calls) != 1 || page.Calls[0].ID != id || page.Next != "" {
		t.Fatalf("history page 2: %d %s", code, b)
	}
	if code, _, _ := do(carol, "GET", "/v1/history", ""); code != 403 {
		t.Fatalf("carol's key has no user scope: %d", code)
	}
	if code, _, _ := do(alice, "GET", "/v1/history?user=carol", ""); code != 403 {
		t.Fatalf("alice reading carol's history: %d", code)
	}
	if code, _, _ := do(alice, "GET", "/v1/history?before=yesterday", ""); code != 400 {
		t.Fatalf("a bad cursor: %d", code)
	}
	if code, _, b := do("operator", "GET", "/v1/history?user=alice", ""); code != 200 || !strings.Contains(string(b), id) {
		t.Fatalf("the operator reads alice's history: %d %s", code, b)
	}

	// The operator mints a short-lived token for dave's page.
	code, _, b = do("operator", "POST", "/v1/tokens", `{"user":"dave","scopes":["call"],"ttl_s":120}`)
	var minted struct{ Token string }
	if json.Unmarshal(b, &minted); code != 201 || minted.Token == "" {
		t.Fatalf("mint: %d %s", code, b)
	}
	if code, id := call(minted.Token, ""); code != 201 || caller(id) != "dave" {
		t.Fatalf("dave's call: %d", code)
	}
	if code, _, _ := do("operator", "POST", "/v1/tokens", `{"user":"dave","scopes":["call"],"ttl_s":999999}`); code != 400 {
		t.Fatalf("a token past --token-max-ttl: %d", code)
	}
}

package server

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
)

// Presence through the API: published by a user's own token, validated,
// read by others; the address book lists the configured users with what
// they published, or available while registered and offline otherwise;
// a token without the user scope is refused.
func TestPresenceAndContacts(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	carol, carolKey, _ := apiauth.NewToken("carol-web", "carol", []string{apiauth.ScopeCall})
	book := filepath.Join(t.TempDir(), "contacts.yaml")
	if err := os.WriteFile(book, []byte("- {user: \"1001\", name: Front desk}\n- {user: dave, name: Dave Bowman}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret", "dave:d-secret"}
		c.APIKeys = []string{aliceKey, carolKey}
		c.ContactsFile = book
	})
	base := "http://" + e.srv.HTTPAddr()
	do := func(token, method, path, ctype, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	registered(t, e, "bob", "b-secret")

	for _, tc := range []struct {
		name, token, method, path, ctype, body string
		status                                 int
	}{
		{"no token", "", "PUT", "/v1/presence", "application/json", `{"status":"away"}`, 401},
		{"no user scope", carol, "PUT", "/v1/presence", "application/json", `{"status":"away"}`, 403},
		{"no user scope to read", carol, "GET", "/v1/contacts", "", "", 403},
		{"bad status", alice, "PUT", "/v1/presence", "application/json", `{"status":"online"}`, 400},
		{"long note", alice, "PUT", "/v1/presence", "application/json", `{"status":"away","note":"` + strings.Repeat("x", 257) + `"}`, 400},
		{"unknown field", alice, "PUT", "/v1/presence", "application/json", `{"status":"away","user":"bob"}`, 400},
		{"not JSON", alice, "PUT", "/v1/presence", "text/plain", `away`, 415},
		{"too large", alice, "PUT", "/v1/presence", "application/json", `{"status":"away","note":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"POST", alice, "POST", "/v1/presence", "application/json", `{"status":"away"}`, 405},
		{"published", alice, "PUT", "/v1/presence", "application/json", `{"status":"dnd","note":"focus"}`, 200},
	} {
		if code, b := do(tc.token, tc.method, tc.path, tc.ctype, tc.body); code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, code, b, tc.status)
		}
	}
	code, b := do(alice, "GET", "/v1/contacts", "", "")
	var got struct {
		Contacts []struct {
			User, Name, Status, Note string
			Registered               bool
		}
	}
	// The --user names, the --contacts-file entries (with their names),
	// whoever is registered or published.
	if json.Unmarshal(b, &got); code != 200 || len(got.Contacts) != 4 {
		t.Fatalf("contacts: %d %s", code, b)
	}
	want := map[string]string{"alice": "dnd", "bob": "available", "dave": "offline", "1001": "offline"}
	names := map[string]string{"dave": "Dave Bowman", "1001": "Front desk"}
	for _, c := range got.Contacts {
		if want[c.User] != c.Status || (c.User == "bob") != c.Registered || names[c.User] != c.Name {
			t.Errorf("contact %+v, want status %q, name %q", c, want[c.User], names[c.User])
		}
	}
	if code, b := do(alice, "GET", "/v1/presence/alice", "", ""); code != 200 || !strings.Contains(string(b), `"note":"focus"`) {
		t.Fatalf("alice's presence: %d %s", code, b)
	}
}

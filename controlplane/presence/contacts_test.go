package presence

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadContacts(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       int
		err        string
	}{
		{"yaml", "- {user: alice, name: Alice Liddell}\n- user: \"1001\"\n  name: Front desk\n- user: bob\n", 3, ""},
		{"json", `[{"user":"alice"},{"user":"carol","name":"Carol"}]`, 2, ""},
		{"empty", "", 0, ""},
		{"twice", "- {user: alice}\n- {user: alice}\n", 0, "listed twice"},
		{"bad user", "- {user: 'a b'}\n", 0, "not a user name"},
		{"no user", "- {name: Nobody}\n", 0, "not a user name"},
		{"unknown key", "- {user: alice, phone: 1}\n", 0, "field phone not found"},
		{"not a list", "user: alice\n", 0, "want a list"},
		{"long name", "- {user: alice, name: " + strings.Repeat("x", 129) + "}\n", 0, "128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "contacts.yaml")
			os.WriteFile(p, []byte(tc.file), 0o600)
			got, err := LoadContacts(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("%v %v, want %d entries", got, err, tc.want)
			}
		})
	}
	if _, err := LoadContacts("/nonexistent"); err == nil {
		t.Fatal("a missing file loaded")
	}
}

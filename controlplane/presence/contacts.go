package presence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Entry is one contact of the shared address book file (--contacts-file).
type Entry struct {
	// User is the user name or number calls and messages go to.
	User string `yaml:"user"`
	// Name is the name people know it by (optional).
	Name string `yaml:"name"`
}

// maxContacts bounds the address book file: it is listed whole on every
// GET /v1/contacts.
const maxContacts = 10000

// LoadContacts reads an address book file: a YAML (or JSON) list of
// {user, name}, for example
//
//   - {user: alice, name: Alice Liddell}
//   - {user: "1001", name: Front desk}
//
// Users must be distinct SIP user parts (1 to 64 characters, no spaces,
// @, :, ; or angle brackets), names at most 128 characters.
func LoadContacts(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var list []Entry
	if err := dec.Decode(&list); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want a list of {user, name}: %w", path, err)
	}
	if len(list) > maxContacts {
		return nil, fmt.Errorf("%s: %d contacts, at most %d", path, len(list), maxContacts)
	}
	seen := map[string]bool{}
	var errs []error
	for i, e := range list {
		switch {
		case e.User == "" || len(e.User) > 64 || strings.ContainsAny(e.User, " \t\r\n@:;<>\","):
			errs = append(errs, fmt.Errorf("%s: entry %d: user %q is not a user name or number", path, i+1, e.User))
		case seen[e.User]:
			errs = append(errs, fmt.Errorf("%s: entry %d: user %q listed twice", path, i+1, e.User))
		case len(e.Name) > 128 || strings.ContainsAny(e.Name, "\r\n"):
			errs = append(errs, fmt.Errorf("%s: entry %d: name of %q: at most 128 characters on one line", path, i+1, e.User))
		}
		seen[e.User] = true
	}
	return list, errors.Join(errs...)
}

package registrar

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// nonceLifetime is how long a nonce Strait issued stays valid; a client
// presenting an older one is challenged again with stale=true (RFC 2617
// section 3.2.1), which JsSIP and SIP.js answer without asking the user.
const nonceLifetime = 5 * time.Minute

// Digest checks SIP digest credentials (RFC 3261 section 22, RFC 8760)
// against a user table. Nonces are stateless: a timestamp and its HMAC
// under a key made at start, so nothing is stored per challenge.
type Digest struct {
	// Realm is the protection realm.
	Realm string

	users map[string]string
	key   []byte
	now   func() time.Time
}

// NewDigest returns a checker for users (name to password).
func NewDigest(realm string, users map[string]string) *Digest {
	k := make([]byte, 32)
	rand.Read(k)
	return &Digest{Realm: realm, users: users, key: k, now: time.Now}
}

// Known reports whether name is a configured user.
func (d *Digest) Known(name string) bool { _, ok := d.users[name]; return ok }

// Challenge returns a WWW-Authenticate / Proxy-Authenticate value.
func (d *Digest) Challenge(stale bool) string {
	c := digest.Challenge{Realm: d.Realm, Nonce: d.nonce(d.now()), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	return c.String()
}

func (d *Digest) nonce(t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 16)
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(ts))
	return ts + "." + hex.EncodeToString(m.Sum(nil)[:16])
}

// checkNonce reports whether the nonce is Strait's and whether it is still
// fresh.
func (d *Digest) checkNonce(n string) (ours, fresh bool) {
	ts, _, ok := strings.Cut(n, ".")
	if !ok {
		return false, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false, false
	}
	t := time.Unix(sec, 0)
	if subtle.ConstantTimeCompare([]byte(d.nonce(t)), []byte(n)) != 1 {
		return false, false
	}
	age := d.now().Sub(t)
	return true, age >= -time.Minute && age <= nonceLifetime
}

// Verdict is the outcome of checking credentials.
type Verdict int

// Verdicts.
const (
	// Denied: no credentials, wrong ones, or an unknown user: challenge.
	Denied Verdict = iota
	// Stale: right credentials with an expired nonce: challenge with
	// stale=true.
	Stale
	// Granted: the user is who they say.
	Granted
)

// Check verifies an Authorization or Proxy-Authorization header value for a
// request of method, and returns the user name the credentials claim.
func (d *Digest) Check(header, method string) (Verdict, string) {
	if header == "" {
		return Denied, ""
	}
	cr, err := digest.ParseCredentials(header)
	if err != nil || cr.Realm != d.Realm {
		return Denied, ""
	}
	pw, ok := d.users[cr.Username]
	if !ok {
		return Denied, cr.Username
	}
	ours, fresh := d.checkNonce(cr.Nonce)
	if !ours {
		return Denied, cr.Username
	}
	chal := &digest.Challenge{Realm: d.Realm, Nonce: cr.Nonce, Algorithm: cr.Algorithm, Opaque: cr.Opaque}
	if cr.QOP != "" {
		chal.QOP = []string{cr.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{Method: method, URI: cr.URI, Username: cr.Username,
		Password: pw, Cnonce: cr.Cnonce, Count: cr.Nc})
	if err != nil || subtle.ConstantTimeCompare([]byte(want.Response), []byte(strings.ToLower(cr.Response))) != 1 {
		return Denied, cr.Username
	}
	if !fresh {
		return Stale, cr.Username
	}
	return Granted, cr.Username
}

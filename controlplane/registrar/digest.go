package registrar

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// nonceLifetime is how long a nonce Strait issued stays valid; a client
// presenting an older one with the right password is challenged again
// with stale=true (RFC 7616 section 3.3), which JsSIP and SIP.js answer
// without asking the user.
const nonceLifetime = 5 * time.Minute

// Digest algorithms (RFC 7616 section 3.3, RFC 8760 for SIP).
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// DefaultAlgorithms are offered in this order: SHA-256 first, as RFC 8760
// section 2.4 asks (challenges in order of preference; a client uses the
// topmost one it supports, RFC 7616 section 3.7), MD5 last. The order also
// keeps JsSIP (3.13) and SIP.js working: they answer only MD5, and their
// message parser keeps only the LAST WWW-Authenticate / Proxy-Authenticate
// header of a response, so MD5 must come last (with MD5 first they saw
// only the SHA-256 challenge and gave up without retrying).
var DefaultAlgorithms = []string{SHA256, MD5}

// ParseAlgorithms checks a list of digest algorithm names (case
// insensitive) and returns them in canonical form, in order.
func ParseAlgorithms(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		switch strings.ToUpper(strings.TrimSpace(n)) {
		case MD5:
			out = append(out, MD5)
		case SHA256:
			out = append(out, SHA256)
		default:
			return nil, fmt.Errorf("digest algorithm %q: want MD5 or SHA-256", n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no digest algorithm")
	}
	return out, nil
}

// Reasons a check fails, for metrics and logs (a bounded set). The SIP
// answer is the same challenge whatever the reason, so that it never
// tells whether a user exists.
const (
	ReasonMalformed     = "malformed"      // not Digest, unparsable, a directive missing
	ReasonRealm         = "realm"          // another realm
	ReasonAlgorithm     = "algorithm"      // an algorithm or qop not offered, userhash
	ReasonNonce         = "nonce"          // a nonce Strait did not issue
	ReasonURI           = "uri_mismatch"   // uri is not the Request-URI
	ReasonUnknownUser   = "unknown_user"   // no such user (answered as a wrong password)
	ReasonWrongPassword = "wrong_password" // the response does not verify
	ReasonStale         = "stale"          // right password, expired or forgotten nonce
	ReasonReplay        = "replay"         // right password, nonce count already used
	ReasonIdentity      = "identity"       // right password of another user than the request is for
	ReasonUpstream      = "upstream"       // trunk mode: the PBX refused the credentials Strait relayed
)

// Digest checks SIP digest credentials (RFC 3261 section 22 with the
// directives of RFC 7616, SHA-256 per RFC 8760) against a user table.
//
// A nonce is a timestamp, 8 random bytes and their HMAC under a key made
// at start: Strait can tell its own nonces and their age without storing
// them. What it stores (in a NonceStore) is each nonce's highest nonce
// count once it authenticated a request, so a captured Authorization
// cannot be presented again, from anywhere. The credentials must name the
// request's method (in the digest), its Request-URI (uri) and the realm.
// qop=auth is offered; credentials without qop (RFC 2069 clients) are
// accepted once per nonce.
//
// A Digest is safe for concurrent use; its fields are frozen after
// NewDigest.
type Digest struct {
	// Realm is the protection realm.
	Realm string

	algorithms []string
	users      atomic.Pointer[map[string]string] // replaced whole by SetUsers
	key        []byte
	nonces     NonceStore
	now        func() time.Time
}

// DigestConfig configures a Digest.
type DigestConfig struct {
	// Realm is the protection realm. Required.
	Realm string
	// Users maps user names to passwords.
	Users map[string]string
	// Algorithms are offered in this order; nil is DefaultAlgorithms.
	Algorithms []string
	// Nonces remembers nonce counts; nil is a MemoryNonces of
	// DefaultNonceCapacity.
	Nonces NonceStore
	// Key signs nonces (at least 16 bytes); nil makes a random one. Give
	// the key kept in the state store so that nonces stay valid across a
	// restart and between control planes.
	Key []byte
}

// NewDigest returns a checker for users (name to password) with the
// default algorithms and an in-memory nonce store.
func NewDigest(realm string, users map[string]string) *Digest {
	return NewDigestWith(DigestConfig{Realm: realm, Users: users})
}

// NewDigestWith returns a checker configured by cfg.
func NewDigestWith(cfg DigestConfig) *Digest {
	k := cfg.Key
	if len(k) < 16 {
		k = make([]byte, 32)
		rand.Read(k)
	}
	d := &Digest{Realm: cfg.Realm, algorithms: cfg.Algorithms, key: k, nonces: cfg.Nonces, now: time.Now}
	d.SetUsers(cfg.Users)
	if len(d.algorithms) == 0 {
		d.algorithms = DefaultAlgorithms
	}
	if d.nonces == nil {
		d.nonces = NewMemoryNonces(DefaultNonceCapacity, nonceLifetime+time.Minute)
	}
	return d
}

// Known reports whether name is a configured user.
func (d *Digest) Known(name string) bool { _, ok := (*d.users.Load())[name]; return ok }

// SetUsers replaces the user table (a configuration reload); checks that
// start afterwards use it. users must not be changed afterwards.
func (d *Digest) SetUsers(users map[string]string) { d.users.Store(&users) }

// Challenges returns the WWW-Authenticate / Proxy-Authenticate values of
// one challenge: one per offered algorithm, in order of preference, with
// the same fresh nonce (RFC 8760 section 2.4). stale marks a challenge to
// credentials that were right but whose nonce was no longer good.
func (d *Digest) Challenges(stale bool) []string {
	t := d.now()
	if f, ok := d.nonces.(NonceFloor); ok {
		if nb := f.NotBefore(); t.Before(nb) {
			t = nb // a nonce of this second would be forgotten
		}
	}
	nonce := d.nonce(t)
	out := make([]string, 0, len(d.algorithms))
	for _, alg := range d.algorithms {
		c := digest.Challenge{Realm: d.Realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

// ChallengeHeaders returns the challenge as headers named name
// ("WWW-Authenticate" for 401, "Proxy-Authenticate" for 407).
func (d *Digest) ChallengeHeaders(name string, stale bool) []sip.Header {
	var hs []sip.Header
	for _, v := range d.Challenges(stale) {
		hs = append(hs, sip.NewHeader(name, v))
	}
	return hs
}

// Challenge returns the first challenge value (the preferred algorithm).
func (d *Digest) Challenge(stale bool) string { return d.Challenges(stale)[0] }

// nonce is "TS.RAND.MAC": TS the issue time (Unix milliseconds, hex;
// fine enough to tell the nonces issued before a state store's loss was
// seen from those after, see StoreNonces), RAND 8 random bytes (hex) so
// that no two challenges share a nonce, MAC the first 16 bytes of
// HMAC-SHA256(key, "TS.RAND") in hex.
func (d *Digest) nonce(t time.Time) string {
	r := make([]byte, 8)
	rand.Read(r)
	body := strconv.FormatInt(t.UnixMilli(), 16) + "." + hex.EncodeToString(r)
	return body + "." + d.mac(body)
}

func (d *Digest) mac(body string) string {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// secondNonces: a nonce time below it is in seconds (an earlier version's
// nonces; 10^11 s is in the year 5138, 10^11 ms in 1973).
const secondNonces = 1e11

// checkNonce reports whether n is a nonce Strait issued, when, and
// whether it is still within its lifetime.
func (d *Digest) checkNonce(n string) (issued time.Time, ours, fresh bool) {
	i := strings.LastIndexByte(n, '.')
	if i < 0 || len(n) > 64 {
		return time.Time{}, false, false
	}
	body, mac := n[:i], n[i+1:]
	if subtle.ConstantTimeCompare([]byte(d.mac(body)), []byte(mac)) != 1 {
		return time.Time{}, false, false
	}
	ts, _, _ := strings.Cut(body, ".")
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return time.Time{}, false, false
	}
	issued = time.UnixMilli(sec)
	if sec < secondNonces {
		issued = time.Unix(sec, 0) // issued by an earlier version, in seconds
	}
	age := d.now().Sub(issued)
	return issued, true, age >= -time.Minute && age <= nonceLifetime
}

// Verdict is the outcome of checking credentials.
type Verdict int

// Verdicts.
const (
	// Denied: no credentials, wrong ones, or an unknown user: challenge.
	Denied Verdict = iota
	// Stale: right credentials with an expired or forgotten nonce:
	// challenge with stale=true.
	Stale
	// Granted: the user is who they say.
	Granted
)

// Result is the outcome of a check.
type Result struct {
	Verdict Verdict
	// User is the user name the credentials claim ("" with none).
	User string
	// Reason says why the verdict is not Granted (one of the Reason
	// constants; "" when there were no credentials at all).
	Reason string
}

// Check verifies the credentials in req's header hdr ("Authorization" or
// "Proxy-Authorization") for req: its method, its Request-URI and the
// realm. With several headers of that name, the one for this realm
// counts. A Granted result has used up the credentials' nonce count.
func (d *Digest) Check(req *sip.Request, hdr string) Result {
	var value string
	for _, h := range req.GetHeaders(hdr) {
		if value == "" || strings.Contains(h.Value(), `realm="`+d.Realm+`"`) {
			value = h.Value()
		}
	}
	if value == "" {
		return Result{Verdict: Denied}
	}
	return d.check(value, string(req.Method), req.Recipient)
}

func (d *Digest) check(value, method string, ruri sip.Uri) Result {
	cr, err := digest.ParseCredentials(value)
	if err != nil || cr.Username == "" || cr.Nonce == "" || cr.URI == "" || cr.Response == "" {
		return Result{Verdict: Denied, Reason: ReasonMalformed}
	}
	deny := func(reason string) Result { return Result{Verdict: Denied, User: cr.Username, Reason: reason} }
	if cr.Realm != d.Realm {
		return deny(ReasonRealm)
	}
	alg := strings.ToUpper(cr.Algorithm)
	if alg == "" {
		alg = MD5 // RFC 7616 section 3.4: absent means MD5
	}
	offered := false
	for _, a := range d.algorithms {
		offered = offered || a == alg
	}
	if !offered || cr.Userhash || (cr.QOP != "" && cr.QOP != "auth") {
		return deny(ReasonAlgorithm)
	}
	nc := uint64(1) // without qop a nonce is good for one request
	if cr.QOP == "auth" {
		if cr.Nc < 1 || cr.Cnonce == "" {
			return deny(ReasonMalformed)
		}
		nc = uint64(cr.Nc)
	}
	issued, ours, fresh := d.checkNonce(cr.Nonce)
	if !ours {
		return deny(ReasonNonce)
	}
	// RFC 7616 section 3.4.6: the uri directive must name the resource of
	// the request line.
	if !sameResource(cr.URI, ruri) {
		return deny(ReasonURI)
	}
	pw, known := (*d.users.Load())[cr.Username]
	if !known {
		// Do the same work as for a known user, so that timing does not
		// tell them apart either.
		pw = "\x00unknown"
	}
	chal := &digest.Challenge{Realm: d.Realm, Nonce: cr.Nonce, Algorithm: alg, Opaque: cr.Opaque}
	if cr.QOP != "" {
		chal.QOP = []string{cr.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{Method: method, URI: cr.URI, Username: cr.Username,
		Password: pw, Cnonce: cr.Cnonce, Count: cr.Nc})
	if err != nil || subtle.ConstantTimeCompare([]byte(want.Response), []byte(strings.ToLower(cr.Response))) != 1 || !known {
		if !known {
			return deny(ReasonUnknownUser)
		}
		return deny(ReasonWrongPassword)
	}
	// Right password from here on: a stale nonce gets stale=true.
	if !fresh {
		return Result{Verdict: Stale, User: cr.Username, Reason: ReasonStale}
	}
	switch d.nonces.Use(cr.Nonce, issued, nc) {
	case NonceReplayed:
		return deny(ReasonReplay)
	case NonceForgotten:
		return Result{Verdict: Stale, User: cr.Username, Reason: ReasonStale}
	}
	return Result{Verdict: Granted, User: cr.Username}
}

// sameResource reports whether a digest uri names the Request-URI: the
// same text, or the same scheme, user, host (case-insensitive) and port.
func sameResource(uri string, ruri sip.Uri) bool {
	if uri == ruri.String() {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && u.User == ruri.User &&
		strings.EqualFold(u.Host, ruri.Host) && u.Port == ruri.Port
}

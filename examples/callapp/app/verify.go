package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Verifier checks Strait's webhook signatures the way any receiver
// should, written here from the documented scheme alone (it imports
// nothing of Strait): the Strait-Signature header is "t=UNIX,v1=HEX", HEX
// the HMAC-SHA256 of "UNIX.BODY" under the shared secret. It refuses a
// wrong signature, a timestamp outside Tolerance (an old webhook replayed
// later) and a delivery id it has already taken within Tolerance (the same
// webhook replayed at once). Safe for concurrent use.
type Verifier struct {
	// Secret is the app's webhook secret (the file given to --app).
	Secret []byte
	// Tolerance is how far a timestamp may be from now (0: 5 minutes).
	Tolerance time.Duration
	// Now returns the time (nil: time.Now); tests move it.
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // delivery id -> when it was taken; guarded by mu
}

// Errors of Verify.
var (
	ErrSignature = errors.New("bad or missing signature")
	ErrStale     = errors.New("signature timestamp too old or in the future")
	ErrReplay    = errors.New("delivery already taken")
)

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) tolerance() time.Duration {
	if v.Tolerance > 0 {
		return v.Tolerance
	}
	return 5 * time.Minute
}

// Verify checks r's signature over body and takes its delivery id. Call
// Release with the id when the webhook could not be handled, so that
// Strait's retry (same id) is taken.
func (v *Verifier) Verify(r *http.Request, body []byte) (delivery string, err error) {
	var ts string
	var sigs []string
	for _, part := range strings.Split(r.Header.Get("Strait-Signature"), ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = val
		case "v1":
			sigs = append(sigs, val)
		}
	}
	sec, perr := strconv.ParseInt(ts, 10, 64)
	if perr != nil || len(sigs) == 0 {
		return "", ErrSignature
	}
	m := hmac.New(sha256.New, v.Secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	ok := false
	for _, s := range sigs {
		if got, err := hex.DecodeString(s); err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return "", ErrSignature
	}
	now := v.now()
	if d := now.Sub(time.Unix(sec, 0)); d > v.tolerance() || d < -v.tolerance() {
		return "", ErrStale
	}
	delivery = r.Header.Get("Strait-Delivery")
	if delivery == "" || len(delivery) > 64 {
		return "", ErrSignature
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for id, at := range v.seen { // forget what the timestamp check refuses anyway
		if now.Sub(at) > 2*v.tolerance() {
			delete(v.seen, id)
		}
	}
	if _, dup := v.seen[delivery]; dup {
		return "", ErrReplay
	}
	v.seen[delivery] = now
	return delivery, nil
}

// Release forgets a delivery id taken by Verify.
func (v *Verifier) Release(delivery string) {
	v.mu.Lock()
	delete(v.seen, delivery)
	v.mu.Unlock()
}

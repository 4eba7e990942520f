package apps

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Webhook headers. The signature follows the scheme Stripe made common
// (and Svix and Twilio's newer hooks share): the signed bytes are the
// Unix timestamp, a dot and the body, so a captured webhook cannot be
// replayed later (the receiver refuses an old timestamp) nor its body
// changed; the delivery id stays the same across retries, so a receiver
// that remembers the ids it took acts on each delivery once.
const (
	// HeaderSignature carries "t=UNIX,v1=HEX": HEX is the HMAC-SHA256,
	// keyed with the app's secret, of "UNIX.BODY".
	HeaderSignature = "Strait-Signature"
	// HeaderDelivery is the delivery's id (the same on every retry).
	HeaderDelivery = "Strait-Delivery"
)

// DefaultTolerance is how old (or how far in the future) a signature's
// timestamp may be: Stripe's five minutes.
const DefaultTolerance = 5 * time.Minute

// Sign returns the HeaderSignature value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("apps: no valid signature header")
	ErrBadSignature = errors.New("apps: signature does not match")
	ErrStale        = errors.New("apps: signature timestamp outside the tolerance")
)

// Verify checks a HeaderSignature value against body at now: the
// timestamp within tolerance (0: DefaultTolerance) and one v1 signature
// that matches, compared in constant time. Several v1 values may be
// given (a receiver rotating secrets); unknown schemes are ignored.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}

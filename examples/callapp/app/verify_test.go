package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sign is the sender's side, written from the documented scheme.
func sign(secret, body string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + body))
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

func TestVerifier(t *testing.T) {
	const secret, body = "the-app-secret-0123", `{"type":"call.incoming","call":"c1"}`
	now := time.Unix(1_800_000_000, 0)
	clock := now
	v := &Verifier{Secret: []byte(secret), Now: func() time.Time { return clock }}
	req := func(sig, delivery, b string) error {
		r := httptest.NewRequest("POST", "/calls", strings.NewReader(b))
		r.Header.Set("Strait-Signature", sig)
		r.Header.Set("Strait-Delivery", delivery)
		_, err := v.Verify(r, []byte(b))
		return err
	}
	steps := []struct {
		name          string
		at            time.Time
		sig, delivery string
		body          string
		want          error
	}{
		{"good", now, sign(secret, body, now), "d1", body, nil},
		{"replayed at once: same delivery", now, sign(secret, body, now), "d1", body, ErrReplay},
		{"replayed at once, new signature time", now.Add(time.Second), sign(secret, body, now.Add(time.Second)), "d1", body, ErrReplay},
		{"replayed later", now.Add(10 * time.Minute), sign(secret, body, now), "d2", body, ErrStale},
		{"body changed", now, sign(secret, body, now), "d3", body + " ", ErrSignature},
		{"wrong secret", now, sign("another-secret-0123", body, now), "d4", body, ErrSignature},
		{"no signature", now, "", "d5", body, ErrSignature},
		{"no delivery id", now, sign(secret, body, now), "", body, ErrSignature},
		{"second delivery", now, sign(secret, body, now), "d6", body, nil},
	}
	for _, s := range steps {
		clock = s.at
		if err := req(s.sig, s.delivery, s.body); !errors.Is(err, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	// A delivery the app failed to handle is released: Strait's retry
	// (same id) is taken.
	clock = now
	v.Release("d6")
	if err := req(sign(secret, body, now), "d6", body); err != nil {
		t.Fatalf("retry after Release: %v", err)
	}
}

func TestAudioCodec(t *testing.T) {
	offer := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
	if c := audioCodec(offer); c.MimeType != "audio/PCMA" {
		t.Fatalf("codec %v, want PCMA (first in the m= line)", c)
	}
	if c := audioCodec("v=0\r\nm=audio 9 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n"); c.MimeType != "" {
		t.Fatalf("codec %v, want none", c)
	}
}

func TestG711(t *testing.T) {
	// Reference values of ITU-T G.711 (silence and full scale).
	for _, c := range []struct {
		in   int16
		u, a byte
	}{{0, 0xff, 0xd5}, {32767, 0x80, 0xaa}, {-32768, 0x00, 0x2a}} {
		if got := linearToULaw(c.in); got != c.u {
			t.Errorf("mu-law(%d) = %#x, want %#x", c.in, got, c.u)
		}
		if got := linearToALaw(c.in); got != c.a {
			t.Errorf("A-law(%d) = %#x, want %#x", c.in, got, c.a)
		}
	}
}

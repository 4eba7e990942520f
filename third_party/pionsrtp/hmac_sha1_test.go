package srtp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec
	"math/rand/v2"
	"testing"
)

// TestHMACSHA1MatchesStdlib: hmacSHA1 is crypto/hmac's HMAC-SHA1 for keys
// shorter than, as long as and longer than a block, two of them sharing a
// digest, over messages split anywhere, used again and again.
func TestHMACSHA1MatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, kl := range []int{0, 1, 20, 64, 65, 200} {
		keys := [2][]byte{make([]byte, kl), make([]byte, kl)}
		for _, k := range keys {
			for i := range k {
				k[i] = byte(r.Uint32())
			}
		}
		var hs [2]hmacSHA1
		d := sha1.New() //nolint:gosec
		for i := range hs {
			if err := hs[i].init(d, keys[i]); err != nil {
				t.Fatal(err)
			}
		}
		for range 50 {
			i := r.IntN(2)
			msg := make([]byte, r.IntN(300))
			for j := range msg {
				msg[j] = byte(r.Uint32())
			}
			split := r.IntN(len(msg) + 1)
			ref := hmac.New(sha1.New, keys[i])
			ref.Write(msg)
			want := ref.Sum([]byte("prefix"))
			got, err := hs[i].mac([]byte("prefix"), msg[:split], msg[split:])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes, message %d bytes split at %d: %x, want %x", kl, len(msg), split, got, want)
			}
		}
	}
}

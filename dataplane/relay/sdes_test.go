package relay

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestSDESRekeyKeepsOurIndexes: a re-INVITE that changes only the PBX's
// key (or repeats ours explicitly) keeps the encrypting context of ours,
// so its SRTP and SRTCP indexes carry on instead of starting again under
// the same key (RFC 3711 section 9.2: keystream used twice under AES-CM;
// RFC 7714 section 8.1: a nonce twice under AES-GCM); the same key of ours
// under another suite is refused; a new key of ours gets a new context.
func TestSDESRekeyKeepsOurIndexes(t *testing.T) {
	for _, suite := range []string{"AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"} {
		t.Run(suite, func(t *testing.T) {
			profile, _ := sdesProfile(suite)
			kl, _ := profile.KeyLen()
			sl, _ := profile.SaltLen()
			theirs := func(b byte) []byte { return bytes.Repeat([]byte{b}, kl+sl) }
			first, err := planSDES(nil, &pb.SDESCrypto{Suite: suite, RemoteKey: theirs(1)})
			if err != nil || first.keys == nil {
				t.Fatal(err)
			}
			cur := first.keys
			const ssrc = 0x5eed
			for range 5 {
				if _, err := cur.enc.EncryptRTCP(nil, rtcpReport(ssrc), nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, sd := range []*pb.SDESCrypto{
				{Suite: suite, RemoteKey: theirs(2)},                      // the PBX rekeyed; ours kept implicitly
				{Suite: suite, RemoteKey: theirs(3), LocalKey: cur.local}, // and explicitly
			} {
				ch, err := planSDES(cur, sd)
				if err != nil || ch.keys == nil {
					t.Fatalf("rekey: %v", err)
				}
				if ch.keys.enc != cur.enc || !bytes.Equal(ch.keys.local, cur.local) {
					t.Fatal("our key kept, but its encrypting context is new: its indexes start again")
				}
				if ch.keys.dec == cur.dec {
					t.Fatal("the PBX's new key decrypts with the old context")
				}
				cur = ch.keys
			}
			if _, err := cur.enc.EncryptRTCP(nil, rtcpReport(ssrc), nil); err != nil {
				t.Fatal(err)
			}
			if idx, _ := cur.enc.Index(ssrc); idx != 6 {
				t.Fatalf("SRTCP index %d after two rekeys, want 6 (numbering carried on)", idx)
			}
			other := "AES_CM_128_HMAC_SHA1_32"
			if suite != "AES_CM_128_HMAC_SHA1_80" {
				other = "AEAD_AES_256_GCM"
			}
			_, err = planSDES(cur, &pb.SDESCrypto{Suite: other, RemoteKey: bytes.Repeat([]byte{4}, len(cur.local)), LocalKey: cur.local})
			if suite == "AES_CM_128_HMAC_SHA1_80" { // same key length: the reuse is possible
				var st interface{ GRPCStatus() *status.Status }
				if !errors.As(err, &st) || st.GRPCStatus().Code() != codes.InvalidArgument {
					t.Fatalf("our key under another suite: %v, want InvalidArgument", err)
				}
			}
			fresh, err := planSDES(cur, &pb.SDESCrypto{Suite: suite, RemoteKey: theirs(5), LocalKey: theirs(6)})
			if err != nil || fresh.keys.enc == cur.enc {
				t.Fatalf("a new key of ours: %v, same context %v", err, fresh.keys != nil && fresh.keys.enc == cur.enc)
			}
		})
	}
}

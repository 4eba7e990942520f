package srtp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1" //nolint:gosec
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// The RFCs' test vectors, run on the fork's own ciphers (the differential
// tests compare it with upstream; these anchor both to the RFCs). The
// vectors give session keys, not master keys, so the ciphers are built
// from them directly, as upstream's RFC tests do.

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// contextWithCipher is a context around a cipher built from session keys.
func contextWithCipher(tb testing.TB, profile ProtectionProfile, c srtpCipher) *Context {
	tb.Helper()
	ctx := &Context{
		srtpSSRCStates:  map[uint32]*srtpSSRCState{},
		srtcpSSRCStates: map[uint32]*srtcpSSRCState{},
		profile:         profile,
		mkis:            map[string]srtpCipher{},
		cipher:          c,
	}
	for _, o := range []ContextOption{SRTPNoReplayProtection(), SRTCPNoReplayProtection()} {
		if err := o(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	ctx.constructed = true
	return ctx
}

// TestAESCMKeystreamRFC3711: the SRTP payload of an all-zero packet is
// the AES-CM keystream of RFC 3711 appendix B.2 (AES-128) and RFC 6188
// section 7.1 (AES-256): counter blocks from the session salt, SSRC 0,
// index 0, incremented per 16-byte block (RFC 3711 section 4.1.1).
func TestAESCMKeystreamRFC3711(t *testing.T) {
	for _, stream := range []bool{true, false} { // crypto/cipher's AES-CTR, xorBytesCTR
		testAESCMKeystreamRFC3711(t, stream)
	}
}

func testAESCMKeystreamRFC3711(t *testing.T, stream bool) {
	for _, tc := range []struct {
		profile   ProtectionProfile
		key, salt string
		keystream string
	}{
		{
			ProtectionProfileAes128CmHmacSha1_80,
			"2B7E151628AED2A6ABF7158809CF4F3C", "F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000",
			"E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0",
		},
		{
			ProtectionProfileAes256CmHmacSha1_80,
			"57f82fe3613fd170a85ec93c40b1f092 2ec4cb0dc025b58272147cc438944a98", "f0f1f2f3f4f5f6f7f8f9fafbfcfd0000",
			"92bdd28a93c3f52511c677d08b5515a4 9da71b2378a854f67050756ded165bac 63c4868b7096d88421b563b8c94c9a31",
		},
	} {
		t.Run(fmt.Sprintf("%v/stream=%v", tc.profile, stream), func(t *testing.T) {
			block, err := aes.NewCipher(unhex(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			var ctr ctrStream
			if stream {
				var ok bool
				if ctr, ok = newCTRStream(block); !ok {
					t.Fatal("no crypto/cipher AES-CTR stream")
				}
			}
			c := &srtpCipherAesCmHmacSha1{
				srtpCTR:                   ctr,
				protectionProfileWithArgs: newProtectionProfileWithArgs(tc.profile, nil),
				srtpBlock:                 block,
				srtcpBlock:                block,
				srtpSessionSalt:           unhex(t, tc.salt),
				srtcpSessionSalt:          unhex(t, tc.salt),
				srtpEncrypted:             true,
				srtcpEncrypted:            true,
			}
			d := sha1.New() //nolint:gosec
			if err := c.srtpSessionAuth.init(d, make([]byte, 20)); err != nil {
				t.Fatal(err)
			}
			if err := c.srtcpSessionAuth.init(d, make([]byte, 20)); err != nil {
				t.Fatal(err)
			}
			ctx := contextWithCipher(t, tc.profile, c)
			want := unhex(t, tc.keystream)
			header := []byte{0x80, 0x0f, 0x00, 0x00, 0xde, 0xca, 0xfb, 0xad, 0x00, 0x00, 0x00, 0x00}
			for _, n := range []int{len(want), 17, 5} { // whole and partial blocks
				pkt := append(bytes.Clone(header), make([]byte, n)...)
				out, err := ctx.EncryptRTP(nil, pkt, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out[:len(header)], header) || !bytes.Equal(out[len(header):len(header)+n], want[:n]) {
					t.Fatalf("%d bytes: keystream %x, want %x", n, out[len(header):len(header)+n], want[:n])
				}
				ctx.SetROC(0, 0) // the same index again
			}
		})
	}
}

// TestAEADRFC7714: RFC 7714 sections 16 and 17 (AES-GCM SRTP and SRTCP,
// encrypted and authenticated only): the IV from SSRC, ROC and sequence
// number (section 8.1) or SRTCP index (section 9.1), the SRTCP AAD with
// the E bit and index (section 9.2), both ways; and a damaged packet is
// refused.
func TestAEADRFC7714(t *testing.T) {
	const (
		rtpPlain = `8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
			69736120 696e2070 61727465 73207472 6573`
		rtcpPlain = `81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef`
	)
	for _, tc := range []struct {
		profile        ProtectionProfile
		key            string
		rtp, rtpAuth   string
		rtcp, rtcpAuth string
	}{
		{
			ProtectionProfileAeadAes128Gcm, "000102030405060708090a0b0c0d0e0f",
			`8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
			0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce`,
			`8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
			69736120 696e2070 61727465 73207472 65732249 3f82d2bc e397e9d7 9e3b19aa 4216`,
			`81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
			c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4`,
			`81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4`,
		},
		{
			ProtectionProfileAeadAes256Gcm, "000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f",
			`8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
			9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13`,
			`8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
			69736120 696e2070 61727465 73207472 6573a866 d5910f88 7463067c eefec452 15d4`,
			`81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
			a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c b26ac3be 800005d4`,
			`81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393 ed2615fe 000005d4`,
		},
	} {
		for _, encrypted := range []bool{true, false} {
			name := tc.profile.String() + "/encrypted"
			wantRTP, wantRTCP := unhex(t, tc.rtp), unhex(t, tc.rtcp)
			if !encrypted {
				name = tc.profile.String() + "/authenticated"
				wantRTP, wantRTCP = unhex(t, tc.rtpAuth), unhex(t, tc.rtcpAuth)
			}
			t.Run(name, func(t *testing.T) {
				newCtx := func() *Context {
					block, err := aes.NewCipher(unhex(t, tc.key))
					if err != nil {
						t.Fatal(err)
					}
					aead, err := cipher.NewGCM(block)
					if err != nil {
						t.Fatal(err)
					}
					salt := unhex(t, "517569642070726f2071756f")
					ctx := contextWithCipher(t, tc.profile, &srtpCipherAeadAesGcm{
						protectionProfileWithArgs: newProtectionProfileWithArgs(tc.profile, nil),
						srtpCipher:                aead, srtcpCipher: aead,
						srtpSessionSalt: salt, srtcpSessionSalt: salt,
						srtpEncrypted: encrypted, srtcpEncrypted: encrypted,
					})
					ctx.SetIndex(0x4d617273, 0x5d3) // the next SRTCP index is 0x5d4
					return ctx
				}
				enc, dec := newCtx(), newCtx()
				out, err := enc.EncryptRTP(nil, unhex(t, rtpPlain), nil)
				if err != nil || !bytes.Equal(out, wantRTP) {
					t.Fatalf("EncryptRTP: %x (%v), want %x", out, err, wantRTP)
				}
				out, err = enc.EncryptRTCP(nil, unhex(t, rtcpPlain), nil)
				if err != nil || !bytes.Equal(out, wantRTCP) {
					t.Fatalf("EncryptRTCP: %x (%v), want %x", out, err, wantRTCP)
				}
				for i := range wantRTP { // any damaged byte is refused
					bad := bytes.Clone(wantRTP)
					bad[i] ^= 0x10
					if _, err := dec.DecryptRTP(nil, bad, nil); err == nil {
						t.Fatalf("DecryptRTP accepted the packet damaged at byte %d", i)
					}
				}
				for i := range wantRTCP {
					bad := bytes.Clone(wantRTCP)
					bad[i] ^= 0x10
					if _, err := dec.DecryptRTCP(nil, bad, nil); err == nil {
						t.Fatalf("DecryptRTCP accepted the packet damaged at byte %d", i)
					}
				}
				in := bytes.Clone(wantRTP)
				if out, err := dec.DecryptRTP(in, in, nil); err != nil || !bytes.Equal(out, unhex(t, rtpPlain)) {
					t.Fatalf("DecryptRTP: %x (%v)", out, err)
				}
				in = bytes.Clone(wantRTCP)
				if out, err := dec.DecryptRTCP(in, in, nil); err != nil || !bytes.Equal(out, unhex(t, rtcpPlain)) {
					t.Fatalf("DecryptRTCP: %x (%v)", out, err)
				}
			})
		}
	}
}

// TestLibsrtpVectors: libsrtp's own test packets (test/srtp_driver.c,
// master key e1f97a0d..., SSRC 0xcafebabe): the whole AES-CM path from
// master key to wire, key derivation (RFC 3711 section 4.3), HMAC-SHA1
// over the packet and the ROC (section 4.2) truncated to 80 and 32 bits,
// SRTCP with the E bit and index 1 (section 3.4); and the fork's
// receiver, replay protection on, takes libsrtp's packets once.
func TestLibsrtpVectors(t *testing.T) {
	master := unhex(t, "e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6")
	rtpPlain := unhex(t, "800f1234decafbadcafebabe abababababababababababababababab")
	rtcpPlain := unhex(t, "81c8000bcafebabe abababababababababababababababab")
	srtp80 := unhex(t, "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb")
	srtcp80 := unhex(t, "81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798")
	for _, tc := range []struct {
		profile ProtectionProfile
		srtp    []byte
	}{
		{ProtectionProfileAes128CmHmacSha1_80, srtp80},
		{ProtectionProfileAes128CmHmacSha1_32, srtp80[:len(srtp80)-6]}, // the 80-bit tag's first 32 bits
	} {
		t.Run(tc.profile.String(), func(t *testing.T) {
			enc, err := CreateContext(master[:16], master[16:], tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := CreateContext(master[:16], master[16:], tc.profile, SRTPReplayProtection(64), SRTCPReplayProtection(64))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := enc.EncryptRTP(nil, rtpPlain, nil); err != nil || !bytes.Equal(out, tc.srtp) {
				t.Fatalf("EncryptRTP: %x (%v), want %x", out, err, tc.srtp)
			}
			// SRTCP's tag is 80 bits in both profiles (RFC 4568 section 6.2).
			if out, err := enc.EncryptRTCP(nil, rtcpPlain, nil); err != nil || !bytes.Equal(out, srtcp80) {
				t.Fatalf("EncryptRTCP: %x (%v), want %x", out, err, srtcp80)
			}
			short := bytes.Clone(tc.srtp[:len(tc.srtp)-1])
			if _, err := dec.DecryptRTP(short, short, nil); err == nil {
				t.Fatal("DecryptRTP accepted a tag one byte short")
			}
			for i := range tc.srtp {
				bad := bytes.Clone(tc.srtp)
				bad[i] ^= 1
				if _, err := dec.DecryptRTP(bad, bad, nil); err == nil {
					t.Fatalf("DecryptRTP accepted the packet damaged at byte %d", i)
				}
			}
			for i := range srtcp80 {
				bad := bytes.Clone(srtcp80)
				bad[i] ^= 1
				if _, err := dec.DecryptRTCP(bad, bad, nil); err == nil {
					t.Fatalf("DecryptRTCP accepted the packet damaged at byte %d", i)
				}
			}
			for i, want := range []bool{true, false} { // the second time is a replay
				in := bytes.Clone(tc.srtp)
				out, err := dec.DecryptRTP(in, in, nil)
				if (err == nil) != want || (want && !bytes.Equal(out, rtpPlain)) {
					t.Fatalf("DecryptRTP #%d: %x (%v)", i+1, out, err)
				}
				in = bytes.Clone(srtcp80)
				out, err = dec.DecryptRTCP(in, in, nil)
				if (err == nil) != want || (want && !bytes.Equal(out, rtcpPlain)) {
					t.Fatalf("DecryptRTCP #%d: %x (%v)", i+1, out, err)
				}
			}
		})
	}
}

// SPDX-FileCopyrightText: 2026 The Strait authors
// SPDX-License-Identifier: MIT

package srtp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"
)

// TestCTRStreamMatchesStdlib: the reused crypto/cipher AES-CTR stream,
// its counter set per call, is cipher.NewCTR's keystream for every IV
// (counters that carry across 64 bits included) and length, in place and
// between buffers, for AES-128 and AES-256 keys, call after call. It
// fails, rather than skips, when this Go's crypto/cipher is not laid out
// as ctrLayout expects: the fork then still works (xorBytesCTR) but the
// CM profiles lose their fast path, which someone must notice.
func TestCTRStreamMatchesStdlib(t *testing.T) {
	if !ctrLayout().ok {
		t.Fatal("crypto/cipher's AES-CTR stream is not laid out as ctrLayout expects: the CM profiles use xorBytesCTR")
	}
	r := rand.New(rand.NewPCG(11, 12))
	ivs := [][]byte{
		make([]byte, 16),
		bytes.Repeat([]byte{0xff}, 16),
		{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe},
	}
	for range 20 {
		iv := make([]byte, 16)
		for i := range iv {
			iv[i] = byte(r.Uint32())
		}
		ivs = append(ivs, iv)
	}
	for _, keyLen := range []int{16, 32} {
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := newCTRStream(block)
		if !ok {
			t.Fatal("no stream for an AES block")
		}
		for _, iv := range ivs {
			for _, n := range []int{0, 1, 15, 16, 17, 127, 128, 129, 160, 255, 256, 257, 1200, 1500} {
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				want := make([]byte, n)
				cipher.NewCTR(block, iv).XORKeyStream(want, src)
				got := make([]byte, n)
				c.xor(iv, got, src)
				if !bytes.Equal(got, want) {
					t.Fatalf("key %d bytes, iv %x, %d bytes: differs from cipher.NewCTR", keyLen, iv, n)
				}
				c.xor(iv, src, src)
				if !bytes.Equal(src, want) {
					t.Fatalf("key %d bytes, iv %x, %d bytes in place: differs from cipher.NewCTR", keyLen, iv, n)
				}
			}
		}
	}
}

// TestSRTPXORPaths: a cipher's SRTP counter mode gives the same bytes
// through the stream and through xorBytesCTR, in place and between
// buffers.
func TestSRTPXORPaths(t *testing.T) {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := newCTRStream(block)
	if !ok {
		t.Fatal("no stream for an AES block")
	}
	iv := []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0, 0}
	src := make([]byte, 200)
	for i := range src {
		src[i] = byte(i)
	}
	want := make([]byte, len(src))
	cipher.NewCTR(block, iv).XORKeyStream(want, src)
	for _, tc := range []struct {
		name    string
		ctr     ctrStream
		inPlace bool
	}{
		{"stream", fast, false},
		{"stream, in place", fast, true},
		{"per-block", ctrStream{}, false},
		{"per-block, in place", ctrStream{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &srtpCipherAesCmHmacSha1{srtpBlock: block, srtpCTR: tc.ctr}
			in := bytes.Clone(src)
			dst := in
			if !tc.inPlace {
				dst = make([]byte, len(src))
			}
			if err := s.srtpXOR(iv, dst, in); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, want) {
				t.Fatalf("%x, want %x", dst, want)
			}
		})
	}
}

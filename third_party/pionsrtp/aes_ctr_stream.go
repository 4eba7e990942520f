// SPDX-FileCopyrightText: 2026 The Strait authors
// SPDX-License-Identifier: MIT

package srtp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"
)

// Strait: ctrStream runs the SRTP payload's AES counter mode (RFC 3711
// section 4.1.1) through crypto/cipher's own AES-CTR, which on amd64 and
// arm64 encrypts eight counter blocks per assembly call, pipelined
// (crypto/internal/fips140/aes ctrBlocks8): a G.711 payload is ten blocks,
// and one cipher.Block.Encrypt call per block (xorBytesCTR) waits out each
// block's ten AES rounds in turn. Measured (BenchmarkRelayHop, AMD EPYC
// with AES-NI): the CM-80 hop spent 45% of its time in per-block AES.
//
// crypto/cipher gives no way to start an AES-CTR stream at another IV, and
// cipher.NewCTR allocates a stream (512 bytes: it copies the key schedule)
// per call, which would be one allocation per packet. So each cipher
// creates one stream, once, and sets its 128-bit counter and position per
// packet. They are unexported fields of crypto/internal/fips140/aes.CTR:
// ctrLayout finds them by name and type with reflect, once per process,
// and then checks the stream so driven against xorBytesCTR (the
// per-block counter mode, itself checked against cipher.NewCTR by
// TestXorBytesCTRMatchesStdlib) on counters that carry across 64 bits and
// lengths that end mid-block. If this Go's crypto/cipher is laid out
// otherwise, or the check fails, newCTRStream reports it and the cipher
// keeps xorBytesCTR: never a wrong keystream, at worst the slower one.
type ctrStream struct {
	s cipher.Stream // cipher.NewCTR's, for this cipher's key
	// The stream's counter (big-endian halves of the 128-bit block
	// counter) and its position in bytes from that counter, inside it.
	hi, lo, off *uint64
}

// ctrFields are the offsets of crypto/cipher's AES-CTR stream's counter
// and position in the object it points to; ok false if not found or not
// working.
type ctrFields struct {
	ok          bool
	hi, lo, off uintptr
}

// ctrLayout is found and checked once per process (the layout is this
// binary's crypto/cipher's).
var ctrLayout = sync.OnceValue(func() ctrFields {
	f, ok := findCTRFields()
	if !ok {
		return ctrFields{}
	}
	f.ok = true
	if !ctrSelfTest(f) {
		return ctrFields{}
	}

	return f
})

// findCTRFields looks, with reflect, for what cipher.NewCTR returns for an
// AES block: a struct holding one pointer to a struct
// crypto/internal/fips140/aes.CTR with the uint64 fields ivhi, ivlo and
// offset.
func findCTRFields() (ctrFields, bool) {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		return ctrFields{}, false
	}
	t := reflect.TypeOf(cipher.NewCTR(block, make([]byte, aes.BlockSize)))
	if t.Kind() != reflect.Struct || t.NumField() != 1 || t.Field(0).Type.Kind() != reflect.Pointer {
		return ctrFields{}, false
	}
	ct := t.Field(0).Type.Elem()
	if ct.Kind() != reflect.Struct || ct.Name() != "CTR" || ct.PkgPath() != "crypto/internal/fips140/aes" {
		return ctrFields{}, false
	}
	var f ctrFields
	for name, off := range map[string]*uintptr{"ivhi": &f.hi, "ivlo": &f.lo, "offset": &f.off} {
		sf, ok := ct.FieldByName(name)
		if !ok || len(sf.Index) != 1 || sf.Type.Kind() != reflect.Uint64 || sf.Type.Size() != 8 {
			return ctrFields{}, false
		}
		*off = sf.Offset
	}

	return f, true
}

// ctrSelfTest drives a stream with f and compares it with xorBytesCTR.
func ctrSelfTest(f ctrFields) bool {
	key := []byte("strait ctr check")
	block, err := aes.NewCipher(key)
	if err != nil {
		return false
	}
	c, ok := newCTRStreamWith(block, f)
	if !ok {
		return false
	}
	ivs := [][]byte{
		make([]byte, 16),
		bytes.Repeat([]byte{0xff}, 16),
		{0, 1, 2, 3, 4, 5, 6, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd},
		{0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0, 0},
	}
	src := make([]byte, 257)
	for i := range src {
		src[i] = byte(i * 7)
	}
	var ks [aes.BlockSize]byte
	got, want := make([]byte, len(src)), make([]byte, len(src))
	for _, iv := range ivs {
		for _, n := range []int{1, 15, 16, 17, 160, 257} {
			if err := xorBytesCTR(block, iv, want[:n], src[:n], ks[:]); err != nil {
				return false
			}
			c.xor(iv, got[:n], src[:n])
			if !bytes.Equal(got[:n], want[:n]) {
				return false
			}
		}
	}

	return true
}

// newCTRStream returns block's AES-CTR stream with its counter settable,
// or ok false when block is not crypto/aes's or this Go's crypto/cipher is
// not laid out as ctrLayout checks (use xorBytesCTR then).
func newCTRStream(block cipher.Block) (ctrStream, bool) {
	f := ctrLayout()
	if !f.ok {
		return ctrStream{}, false
	}

	return newCTRStreamWith(block, f)
}

func newCTRStreamWith(block cipher.Block, f ctrFields) (ctrStream, bool) {
	s := cipher.NewCTR(block, make([]byte, aes.BlockSize))
	v := reflect.ValueOf(s)
	if v.Kind() != reflect.Struct || v.NumField() != 1 || v.Field(0).Kind() != reflect.Pointer ||
		v.Field(0).Type().Elem().PkgPath() != "crypto/internal/fips140/aes" {
		return ctrStream{}, false // not an AES block, or another stream
	}
	p := v.Field(0).UnsafePointer()

	return ctrStream{
		s:   s,
		hi:  (*uint64)(unsafe.Add(p, f.hi)),
		lo:  (*uint64)(unsafe.Add(p, f.lo)),
		off: (*uint64)(unsafe.Add(p, f.off)),
	}, true
}

// xor sets dst to src XOR the AES-CTR keystream from counter block iv (16
// bytes), over min(len(dst), len(src)) bytes. dst and src must be the
// same bytes or not overlap: crypto/cipher panics otherwise, as
// upstream's XOR (crypto/subtle.XORBytes) does.
func (c *ctrStream) xor(iv, dst, src []byte) {
	n := min(len(dst), len(src))
	*c.hi = binary.BigEndian.Uint64(iv[:8])
	*c.lo = binary.BigEndian.Uint64(iv[8:16])
	*c.off = 0
	c.s.XORKeyStream(dst[:n], src[:n])
}

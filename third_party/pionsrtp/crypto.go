// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package srtp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"

	"github.com/pion/transport/v5/utils/xor"
)

// xorBytesCTR performs CTR encryption and decryption.
// It is equivalent to cipher.NewCTR followed by XORKeyStream.
//
// Strait: the keystream of up to len(ks) bytes at a time (a multiple of
// the block size; ks is the cipher's own buffer, as a Context is used by
// one goroutine at a time) is built with the counter held in two words and
// XORed in one call, where upstream takes a pooled buffer (Get and a
// deferred Put per packet) and increments the counter byte by byte. The
// counter is the same 128-bit big-endian integer, so the keystream is
// upstream's (TestXorBytesCTRMatchesStdlib). The ciphers give it one
// block: a buffer per context large enough for a whole payload is cold
// memory to write at every packet when a node serves thousands of them.
func xorBytesCTR(block cipher.Block, iv []byte, dst, src, ks []byte) error {
	const bs = aes.BlockSize
	if len(iv) != bs || block.BlockSize() != bs || len(ks) < bs || len(ks)%bs != 0 {
		return errBadIVLength
	}
	hi, lo := binary.BigEndian.Uint64(iv[:8]), binary.BigEndian.Uint64(iv[8:])
	n := min(len(dst), len(src))
	for off := 0; off < n; {
		chunk := min(n-off, len(ks))
		for b := 0; b < chunk; b += bs {
			binary.BigEndian.PutUint64(ks[b:], hi)
			binary.BigEndian.PutUint64(ks[b+8:], lo)
			block.Encrypt(ks[b:b+bs], ks[b:b+bs])
			lo++
			if lo == 0 {
				hi++
			}
		}
		xor.XorBytes(dst[off:off+chunk], src[off:off+chunk], ks[:chunk])
		off += chunk
	}

	return nil
}

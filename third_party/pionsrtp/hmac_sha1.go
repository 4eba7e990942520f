// SPDX-FileCopyrightText: 2026 The Strait authors
// SPDX-License-Identifier: MIT

package srtp

import (
	"crypto/sha1" //nolint:gosec
	"encoding"
	"errors"
	"hash"
)

// Strait: hmacSHA1 is HMAC-SHA1 (RFC 2104), as crypto/hmac computes it for
// the CM profiles' authentication tags, laid out for a node that holds
// thousands of contexts, each out of cache by its next packet. crypto/hmac
// keeps the keyed inner and outer SHA-1 states apart from its two digests
// and from itself: five objects, each a cache miss per packet. Here the two
// keyed states are inline (in the cipher, by value) and one SHA-1 digest,
// shared by a cipher's SRTP and SRTCP tags, is restored from them in turn.
// Not safe for concurrent use, as a Context.
type hmacSHA1 struct {
	d     hash.Hash                  // SHA-1; shared by the cipher's hmacSHA1s
	u     encoding.BinaryUnmarshaler // d
	n     int                        // length of the marshalled states
	inner [sha1StateSize]byte        // SHA-1 state after key XOR ipad
	outer [sha1StateSize]byte        // after key XOR opad
	sum   [sha1.Size]byte            // the inner hash
}

// sha1StateSize is the length of crypto/sha1's marshalled state.
const sha1StateSize = 96

var errHMACState = errors.New("crypto/sha1 state cannot be kept")

// init keys h with key, computing its states with d (a new crypto/sha1
// digest, which h then uses; several hmacSHA1s may share one).
func (h *hmacSHA1) init(d hash.Hash, key []byte) error {
	m, ok := d.(interface {
		encoding.BinaryMarshaler
		encoding.BinaryUnmarshaler
	})
	if !ok {
		return errHMACState
	}
	if len(key) > sha1.BlockSize {
		k := sha1.Sum(key) //nolint:gosec
		key = k[:]
	}
	var pad [sha1.BlockSize]byte
	for i, state := range []*[sha1StateSize]byte{&h.inner, &h.outer} {
		x := byte(0x36)
		if i == 1 {
			x = 0x5c
		}
		for j := range pad {
			pad[j] = x
			if j < len(key) {
				pad[j] ^= key[j]
			}
		}
		d.Reset()
		d.Write(pad[:]) //nolint:errcheck // hash.Hash's Write never fails
		st, err := m.MarshalBinary()
		if err != nil || len(st) > len(state) || (h.n != 0 && len(st) != h.n) {
			return errHMACState
		}
		h.n = copy(state[:], st)
	}
	h.d, h.u = d, m

	return nil
}

// mac appends HMAC(key, m1 || m2) to dst.
func (h *hmacSHA1) mac(dst, m1, m2 []byte) ([]byte, error) {
	if err := h.u.UnmarshalBinary(h.inner[:h.n]); err != nil {
		return nil, err
	}
	h.d.Write(m1) //nolint:errcheck
	h.d.Write(m2) //nolint:errcheck
	inner := h.d.Sum(h.sum[:0])
	if err := h.u.UnmarshalBinary(h.outer[:h.n]); err != nil {
		return nil, err
	}
	h.d.Write(inner) //nolint:errcheck

	return h.d.Sum(dst), nil
}

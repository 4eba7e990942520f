// SPDX-FileCopyrightText: 2026 The Strait authors
// SPDX-License-Identifier: MIT

package srtp

import "errors"

// ErrIndexBelowFloor is returned by EncryptRTP for a packet whose SRTP
// index (rollover counter and sequence number) lies below the floor set
// with SetSRTPIndexFloor: it may have been used already under this key.
// Strait: not in upstream.
var ErrIndexBelowFloor = errors.New("srtp: index below the floor of a restored context")

// maxSRTPIndex is the highest 48-bit SRTP packet index (RFC 3711 section
// 3.3.1).
const maxSRTPIndex = 1<<48 - 1

// SRTPIndex returns the highest SRTP packet index (ROC<<16 | SEQ, 48 bits)
// the context has processed for ssrc, or its rollover counter's start
// (ROC<<16) if SetROC set it and no packet came since. Strait: not in
// upstream, which only tells the ROC.
func (c *Context) SRTPIndex(ssrc uint32) (uint64, bool) {
	state, ok := c.srtpSSRCStates[ssrc]
	if !ok {
		return 0, false
	}

	return state.index, true
}

// SetSRTPIndex sets the highest SRTP packet index (ROC<<16 | SEQ) the
// context has processed for ssrc, as if a packet at index had been: the
// next packets' rollover counter is estimated from it (RFC 3711 section
// 3.3.1: a sequence number within 2^15 of index's, across a wrap either
// way, takes the right ROC), where SetROC takes its ROC as it is for the
// next packet whatever its sequence number. A decrypting context so set
// follows a sender that went on a wrap further than a saved position.
// The replay window is not changed.
//
// Strait: not in upstream.
func (c *Context) SetSRTPIndex(ssrc uint32, index uint64) {
	state, _ := c.getSRTPSSRCState(ssrc, true)
	state.index, state.rolloverHasProcessed = min(index, maxSRTPIndex), true
}

// SetSRTPIndexFloor makes an encrypting context carry on for ssrc from a
// saved position without ever reusing an index: next is the lowest SRTP
// packet index (ROC<<16 | SEQ) the context may still use, above every
// index used before under the same master key. The next packets' rollover
// counter is estimated from it (as SetSRTPIndex(ssrc, next-1)), and
// EncryptRTP refuses, with ErrIndexBelowFloor, a packet whose index would
// be below next: under AES-CM a second use of an index reuses its
// keystream, under AES-GCM its nonce, which gives away the authentication
// key (RFC 3711 section 9.2, RFC 7714 sections 8.1 and 16). A floor of 0
// sets the SSRC as new. For encrypting contexts.
//
// Strait: not in upstream. A relay that saves its contexts' state and
// restores it after a restart sets the floor above what it saved (a
// saved record can lag the packets sent).
func (c *Context) SetSRTPIndexFloor(ssrc uint32, next uint64) {
	state, _ := c.getSRTPSSRCState(ssrc, true)
	next = min(next, maxSRTPIndex)
	if next == 0 {
		state.index, state.rolloverHasProcessed, state.floor = 0, false, 0

		return
	}
	state.index, state.rolloverHasProcessed, state.floor = next-1, true, next
}

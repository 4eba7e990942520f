// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package srtp

import (
	"errors"
	"fmt"

	upstream "github.com/pion/srtp/v3"
)

var (
	// ErrFailedToVerifyAuthTag is returned when decryption fails due to invalid authentication tag.
	// Strait: upstream's own value, so that errors.Is matches either package's.
	ErrFailedToVerifyAuthTag = upstream.ErrFailedToVerifyAuthTag
	// ErrMKINotFound is returned when decryption fails due to unknown MKI value in packet.
	ErrMKINotFound = errors.New("MKI not found")
	// ErrContextOptionNotUpdatable indicates an option cannot be updated after construction.
	ErrContextOptionNotUpdatable = errors.New("option can only be set during context construction")

	errDuplicated             = errors.New("duplicated packet")
	errShortSrtpMasterKey     = errors.New("SRTP master key is not long enough")
	errShortSrtpMasterSalt    = errors.New("SRTP master salt is not long enough")
	errNoSuchSRTPProfile      = errors.New("no such SRTP Profile")
	errNonZeroKDRNotSupported = errors.New("indexOverKdr > 0 is not supported yet")
	errTooShortRTP            = errors.New("packet is too short to be RTP packet")
	errTooShortRTCP           = errors.New("packet is too short to be RTCP packet")
	errBadIVLength            = errors.New("bad iv length in xorBytesCTR")
	errExceededMaxPackets     = errors.New("exceeded the maximum number of packets")
	errMKIAlreadyInUse        = errors.New("MKI already in use")
	errMKIIsNotEnabled        = errors.New("MKI is not enabled")
	errInvalidMKILength       = errors.New("invalid MKI length")
	errTooLongSRTPAuthTag     = errors.New("SRTP auth tag is too long")
	errTooShortSRTPAuthTag    = errors.New("SRTP auth tag is too short")

	errZeroRocTransmitRate = errors.New("ROC transmit rate is zero")
	errUnsupportedRccMode  = errors.New("unsupported RCC mode")

	errUnsupportedHeaderExtension   = errors.New("unsupported header extension")
	errHeaderLengthMismatch         = errors.New("header length mismatch")
	errUnencryptedHeaderExtAndCSRCs = errors.New("unencrypted header extensions and CSRCs are not allowed")
	errCryptexDisabled              = errors.New("cryptex is disabled")
)

type duplicatedError struct {
	Proto string // srtp or srtcp
	SSRC  uint32
	Index uint32 // sequence number or index
}

// Strait: the replay errors, one value each, which name no SSRC or index
// (upstream allocates a duplicatedError naming them per replayed packet).
var (
	errDuplicatedSRTP  error = &duplicatedError{Proto: "srtp"}
	errDuplicatedSRTCP error = &duplicatedError{Proto: "srtcp"}
)

func (e *duplicatedError) Error() string {
	if e.SSRC == 0 && e.Index == 0 {
		return fmt.Sprintf("%s: %v", e.Proto, errDuplicated)
	}

	return fmt.Sprintf("%s ssrc=%d index=%d: %v", e.Proto, e.SSRC, e.Index, errDuplicated)
}

func (e *duplicatedError) Unwrap() error {
	return errDuplicated
}

package sdp

import (
	"errors"
	"fmt"
)

// SIP status codes an [Error] carries (RFC 3261 section 21).
const (
	// statusBadRequest: the description cannot be parsed (section 21.4.1).
	statusBadRequest = 400
	// statusNotAcceptableHere: the description parses, but nothing in it,
	// or not the part that matters, can be served (section 21.4.26).
	statusNotAcceptableHere = 488
	// statusServerInternalError: the caller handed this package
	// inconsistent input. That is a bug in Strait, not the peer's fault
	// (section 21.5.1).
	statusServerInternalError = 500
)

// Causes an [Error] wraps; test them with [errors.Is].
var (
	// ErrMalformed: the description is not valid SDP, or an attribute
	// Strait relies on cannot be read (status 400).
	ErrMalformed = errors.New("malformed SDP")
	// ErrNoCommonCodec: no audio or video section can be carried with a
	// codec both sides accept (status 488).
	ErrNoCommonCodec = errors.New("no common codec")
	// ErrUnacceptable: the description is valid but Strait cannot serve it,
	// e.g. a WebRTC description without ICE credentials or fingerprint, or
	// an answer that does not match its offer (status 488).
	ErrUnacceptable = errors.New("unacceptable SDP")
	// ErrInvalidInput: the caller passed inconsistent arguments, e.g.
	// streams not derived from the offer being answered (status 500).
	ErrInvalidInput = errors.New("invalid input")
)

// Error is a failure to parse, negotiate or build a description, with the
// SIP status code a UAS should answer the request carrying the offending
// description with.
type Error struct {
	// Status is the SIP status code: 400, 488 or 500.
	Status int
	// Err is the cause; it wraps one of the Err* values of this package.
	Err error
}

// Error returns the cause's text.
func (e *Error) Error() string { return "sdp: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// StatusCode returns the SIP status code to answer with.
func (e *Error) StatusCode() int { return e.Status }

func newError(status int, kind error, format string, args ...any) *Error {
	return &Error{Status: status, Err: fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))}
}

// malformed reports unparsable input (400).
func malformed(format string, args ...any) error {
	return newError(statusBadRequest, ErrMalformed, format, args...)
}

// unacceptable reports input Strait cannot serve (488).
func unacceptable(format string, args ...any) error {
	return newError(statusNotAcceptableHere, ErrUnacceptable, format, args...)
}

// noCommonCodec reports that negotiation left nothing to carry (488).
func noCommonCodec(format string, args ...any) error {
	return newError(statusNotAcceptableHere, ErrNoCommonCodec, format, args...)
}

// invalidInput reports a caller bug (500).
func invalidInput(format string, args ...any) error {
	return newError(statusServerInternalError, ErrInvalidInput, format, args...)
}

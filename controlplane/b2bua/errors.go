package b2bua

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/controlplane/sdp"
)

// Error is a call failure that knows the SIP status it is answered with,
// and the gRPC code it maps to for callers of the API.
type Error struct {
	// Status is the SIP status code, 400-699.
	Status int
	// Reason is the reason phrase, empty for the standard one.
	Reason string
	// Err is the cause, if any.
	Err error
}

// Error describes the failure with its status.
func (e *Error) Error() string {
	msg := fmt.Sprintf("sip %d", e.Status)
	if e.Reason != "" {
		msg += " " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// StatusCode returns the SIP status.
func (e *Error) StatusCode() int { return e.Status }

// GRPCStatus maps the SIP status for gRPC and API callers.
func (e *Error) GRPCStatus() *status.Status {
	c := codes.Unknown
	switch {
	case e.Status == 400 || e.Status == 488 || e.Status == 606:
		c = codes.InvalidArgument
	case e.Status == 401 || e.Status == 407:
		c = codes.Unauthenticated
	case e.Status == 403 || e.Status == 603:
		c = codes.PermissionDenied
	case e.Status == 404 || e.Status == 604 || e.Status == 484:
		c = codes.NotFound
	case e.Status == 408 || e.Status == 504:
		c = codes.DeadlineExceeded
	case e.Status == 486 || e.Status == 600 || e.Status == 491:
		c = codes.Aborted
	case e.Status == 487:
		c = codes.Canceled
	case e.Status == 480 || e.Status == 430 || e.Status >= 500:
		c = codes.Unavailable
	}
	return status.New(c, e.Error())
}

func sipError(code int, reason string, err error) *Error {
	return &Error{Status: code, Reason: reason, Err: err}
}

// statusOf returns the SIP status an error answers with: its own when it
// has one (b2bua or sdp errors), 500 otherwise.
func statusOf(err error) (int, string) {
	var be *Error
	if errors.As(err, &be) {
		return be.Status, be.Reason
	}
	var se *sdp.Error
	if errors.As(err, &se) {
		return se.StatusCode(), ""
	}
	return 500, ""
}

// Causes a B2BUA answers with.
var (
	errNoRoute    = sipError(404, "", errors.New("no such user"))
	errOffline    = sipError(480, "", errors.New("user not registered"))
	errFlowFailed = sipError(430, "", errors.New("the browser's connection is gone"))
)

// mapFailure maps a final failure from one leg to what the other leg is
// told: busy and decline stay busy, codec trouble stays 488, a PBX's
// server errors become 503, redirects Strait neither followed nor passed
// back (redirect.go) become 480, and anything else passes.
func mapFailure(code int) int {
	switch {
	case code == 486 || code == 600:
		return 486
	case code == 488 || code == 606:
		return 488
	case code >= 300 && code < 400:
		return 480
	case code >= 500 && code < 600 && code != 503 && code != 504:
		return 503
	case code == 504:
		return 408
	case code == 603:
		return 603
	case code >= 600:
		return 480
	}
	return code
}

package sipnet

import (
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// reasons are the RFC 3261 section 21 (and RFC 5626, RFC 4028) reason
// phrases Strait sends.
var reasons = map[int]string{
	100: "Trying", 180: "Ringing", 183: "Session Progress",
	200: "OK", 202: "Accepted",
	400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
	407: "Proxy Authentication Required", 408: "Request Timeout", 415: "Unsupported Media Type",
	420: "Bad Extension", 422: "Session Interval Too Small", 423: "Interval Too Brief",
	430: "Flow Failed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
	482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here",
	487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
	500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

// ReasonPhrase returns the standard reason phrase of a status code.
func ReasonPhrase(code int) string {
	if r, ok := reasons[code]; ok {
		return r
	}
	switch {
	case code < 200:
		return "Progress"
	case code < 300:
		return "OK"
	case code < 400:
		return "Redirect"
	case code < 500:
		return "Client Error"
	case code < 600:
		return "Server Error"
	}
	return "Global Failure"
}

// RetryAfter is a Retry-After header for d, in whole seconds rounded up
// (RFC 3261 section 20.33), at least 1.
func RetryAfter(d time.Duration) sip.Header {
	s := int64((d + time.Second - 1) / time.Second)
	return sip.NewHeader("Retry-After", strconv.FormatInt(max(s, 1), 10))
}

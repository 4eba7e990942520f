package api

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// ProblemContentType is the media type of every error body (RFC 9457
// section 3).
const ProblemContentType = "application/problem+json"

// problemBase prefixes the type URIs of Strait's problems. RFC 9457 section
// 3.1.1 allows relative references; these resolve against the API's origin
// and name the kind of problem, not a page that must exist.
const problemBase = "/v1/problems/"

// Problem is the body of every error response: RFC 9457 problem details,
// with the SIP status behind a failed call as an extension member.
type Problem struct {
	// Type names the kind of problem (a URI reference); "about:blank"
	// when the HTTP status says it all (RFC 9457 section 4.2.1).
	Type string `json:"type"`
	// Title is the short, fixed summary of the type.
	Title string `json:"title"`
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Detail says what went wrong with this request.
	Detail string `json:"detail,omitempty"`
	// Instance is the request's path.
	Instance string `json:"instance,omitempty"`
	// SIPStatus is the SIP status behind a failed call, when there is one.
	SIPStatus int `json:"sip_status,omitempty"`
	// RetryAfter is the number of seconds to wait before trying again
	// (also sent as Retry-After), for 429 and 503.
	RetryAfter int `json:"retry_after,omitempty"`
}

// Kinds of problem, each a Type under problemBase. A status alone says
// the rest ("about:blank").
const (
	// ProblemRateLimited: too many requests from this source or user (429).
	ProblemRateLimited = "rate-limited"
	// ProblemCallFailed: the SIP side refused or failed the call.
	ProblemCallFailed = "call-failed"
	// ProblemDialPlan: the dial plan refused the destination (403) or the
	// user's limits (429).
	ProblemDialPlan = "dial-plan"
	// ProblemBadRequest: the body or parameters are malformed.
	ProblemBadRequest = "bad-request"
	// ProblemScope: the token lacks the scope the request needs.
	ProblemScope = "insufficient-scope"
	// ProblemMailboxFull: the offline recipient's mailbox is at its
	// limit (507).
	ProblemMailboxFull = "mailbox-full"
	// ProblemSenderShareFull: the sender has as many messages waiting
	// for offline users as one sender may (507,
	// --offline-messages-per-sender).
	ProblemSenderShareFull = "sender-share-full"
)

// WriteProblem writes a problem details response. kind is one of the
// Problem* kinds or "" (about:blank); detail may be empty. It is exported
// for the other handlers on the HTTP listener (rate limits, /metrics) so
// that every error the server sends has this one shape.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, kind, detail string) {
	writeProblem(w, r, Problem{Status: status, Type: kind, Detail: detail})
}

// WriteTooManyRequests writes a 429 (RFC 6585 section 4) with Retry-After
// rounded up to whole seconds (RFC 9110 section 10.2.3).
func WriteTooManyRequests(w http.ResponseWriter, r *http.Request, retry time.Duration, detail string) {
	writeProblem(w, r, Problem{Status: http.StatusTooManyRequests, Type: ProblemRateLimited, Detail: detail,
		RetryAfter: retrySeconds(retry)})
}

func retrySeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	} else if p.Type != "about:blank" {
		p.Type = problemBase + p.Type
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if r != nil && p.Instance == "" {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	h.Set("Content-Type", ProblemContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

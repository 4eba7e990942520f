package apps

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Incoming is the body of the webhook that offers a call to an app
// (JSON, type "call.incoming").
type Incoming struct {
	// Type is "call.incoming".
	Type string `json:"type"`
	// Delivery is the delivery's id, also in the Strait-Delivery header:
	// the same on every retry.
	Delivery string `json:"delivery"`
	// Call is the call's id in the HTTP API.
	Call string `json:"call"`
	// App is the app's configured name.
	App string `json:"app"`
	// Caller and Callee are the user parts (numbers) of the two sides.
	// The caller's is what the PBX or phone said: unverified.
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// Time is when the call arrived; Expires when Strait stops waiting
	// for the app's answer.
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
	// Offer is Strait's WebRTC SDP offer (complete: ICE-lite, all
	// candidates, DTLS fingerprint) for the app's RTCPeerConnection.
	Offer string `json:"offer"`
	// CallURL is the call's resource; AnswerURL where an app that
	// answered the webhook 202 posts its answer (paths on Strait's HTTP
	// API, with a token of scope receive:APP).
	CallURL   string `json:"call_url"`
	AnswerURL string `json:"answer_url"`
}

// Response is what an app may answer a webhook with, as JSON (an SDP
// answer may also come as the body itself, application/sdp).
type Response struct {
	// Answer is the SDP answer: the call is answered.
	Answer string `json:"answer,omitempty"`
	// Reject, 400-699, refuses the call with that SIP status (486 busy,
	// 603 decline, ...).
	Reject int `json:"reject,omitempty"`
}

// Reply is what came of offering a call to an app.
type Reply struct {
	// Answer is the app's SDP answer.
	Answer []byte
	// Reject is the SIP status the app refused the call with.
	Reject int
	// Later: the app accepted the webhook (202) and answers through the
	// API.
	Later bool
	// Err: no usable answer (the app unreachable after the retries, an
	// internal address, a malformed response); the caller gets 480.
	Err error
}

// Retry shapes webhook retries. Attempts after the first wait Base,
// doubling up to Max, each with up to a quarter of random jitter (or a
// 429/503's Retry-After, when shorter than Max); each attempt is bounded
// by PerAttempt.
type Retry struct {
	Attempts   int
	Base, Max  time.Duration
	PerAttempt time.Duration
}

// DefaultRetry: four attempts within about 4 s of backoff, each bounded
// by 5 s: a call rings at most some 25 s before the caller hears that the
// app is down, less than the answer timeout.
var DefaultRetry = Retry{Attempts: 4, Base: 500 * time.Millisecond, Max: 2 * time.Second, PerAttempt: 5 * time.Second}

// maxResponse bounds what is read of a webhook's response: an SDP answer
// is a few KiB.
const maxResponse = 64 << 10

// Hooks sends webhooks. Frozen after construction; safe for concurrent
// use.
type Hooks struct {
	client   *http.Client
	retry    Retry
	attempts *prometheus.CounterVec
	outcomes *prometheus.CounterVec
}

// Attempt results (the label of strait_app_webhook_attempts_total).
const (
	attemptOK       = "2xx"
	attempt4xx      = "4xx"
	attempt5xx      = "5xx"
	attemptTimeout  = "timeout"
	attemptError    = "error"
	attemptInternal = "internal_address"
)

// Outcomes (the label of strait_app_calls_total).
const (
	// OutcomeAnswered: the app answered (webhook or API).
	OutcomeAnswered = "answered"
	// OutcomeRejected: the app refused the call.
	OutcomeRejected = "rejected"
	// OutcomeUnreachable: no usable webhook response after the retries.
	OutcomeUnreachable = "unreachable"
	// OutcomeTimeout: no answer in time.
	OutcomeTimeout = "timeout"
	// OutcomeCancelled: the caller gave up first.
	OutcomeCancelled = "cancelled"
	// OutcomeBadAnswer: the app's SDP answer was refused.
	OutcomeBadAnswer = "bad_answer"
)

func newHooks(allowPrivate bool, r Retry, names []string) *Hooks {
	if r.Attempts <= 0 {
		r = DefaultRetry
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would connect where the dial guard cannot see
		DialContext:           newDialer(allowPrivate).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   dialTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	h := &Hooks{
		client: &http.Client{Transport: tr,
			// Redirects are not followed: the URL is the operator's, not
			// the network's.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		retry: r,
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_app_webhook_attempts_total",
			Help: "Webhook requests to apps by app and result (2xx, 4xx, 5xx, timeout, error, internal_address)."}, []string{"app", "result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_app_calls_total",
			Help: "Calls offered to apps by app and outcome (answered, rejected, unreachable, timeout, cancelled, bad_answer)."}, []string{"app", "outcome"}),
	}
	for _, n := range names {
		for _, r := range []string{attemptOK, attempt4xx, attempt5xx, attemptTimeout, attemptError, attemptInternal} {
			h.attempts.WithLabelValues(n, r)
		}
		for _, o := range []string{OutcomeAnswered, OutcomeRejected, OutcomeUnreachable, OutcomeTimeout, OutcomeCancelled, OutcomeBadAnswer} {
			h.outcomes.WithLabelValues(n, o)
		}
	}
	return h
}

// Collectors returns the webhook metrics, for the server's registry.
func (h *Hooks) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.attempts, h.outcomes}
}

// Outcome counts how a call offered to app ended up.
func (h *Hooks) Outcome(app *App, outcome string) {
	h.outcomes.WithLabelValues(app.Name, outcome).Inc()
}

// NewDelivery returns a fresh delivery id.
func NewDelivery() string {
	var b [12]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Offer POSTs in to app, retrying as h's Retry says, until a usable
// response, a permanent failure or ctx's end. It never returns before
// its last request is done, so nothing outlives it.
func (h *Hooks) Offer(ctx context.Context, app *App, in Incoming) Reply {
	in.Type = "call.incoming"
	in.App = app.Name
	if in.Delivery == "" {
		in.Delivery = NewDelivery()
	}
	body, err := json.Marshal(in)
	if err != nil {
		return Reply{Err: err}
	}
	wait := h.retry.Base
	var last error
	for attempt := 1; ; attempt++ {
		rep, retry, after := h.attempt(ctx, app, in.Delivery, body)
		if !retry {
			return rep
		}
		last = rep.Err
		if attempt >= h.retry.Attempts {
			return Reply{Err: fmt.Errorf("apps: webhook to %s failed %d times: %w", app.Name, attempt, last)}
		}
		d := wait + rand.N(wait/4+1)
		if after > 0 && after < h.retry.Max {
			d = after
		}
		wait = min(2*wait, h.retry.Max)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return Reply{Err: fmt.Errorf("apps: webhook to %s: %w (last: %v)", app.Name, ctx.Err(), last)}
		case <-t.C:
		}
	}
}

// attempt makes one request. It reports whether to retry, and the
// response's Retry-After.
func (h *Hooks) attempt(ctx context.Context, app *App, delivery string, body []byte) (Reply, bool, time.Duration) {
	if ctx.Err() != nil {
		return Reply{Err: ctx.Err()}, false, 0
	}
	actx, cancel := context.WithTimeout(ctx, h.retry.PerAttempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, app.URL.String(), bytes.NewReader(body))
	if err != nil {
		return Reply{Err: err}, false, 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/sdp, application/json")
	req.Header.Set("User-Agent", "Strait-Webhook/1")
	req.Header.Set(HeaderDelivery, delivery)
	req.Header.Set(HeaderSignature, Sign(app.secret, time.Now(), body))
	res, err := h.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, ErrInternalAddress):
			h.count(app, attemptInternal)
			return Reply{Err: err}, false, 0
		case ctx.Err() != nil:
			return Reply{Err: ctx.Err()}, false, 0 // the call is over: not the app's failure
		case errors.Is(err, context.DeadlineExceeded):
			h.count(app, attemptTimeout)
		default:
			h.count(app, attemptError)
		}
		return Reply{Err: err}, true, 0
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	switch {
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusRequestTimeout:
		if res.StatusCode >= 500 {
			h.count(app, attempt5xx)
		} else {
			h.count(app, attempt4xx)
		}
		return Reply{Err: fmt.Errorf("apps: %s answered %d", app.Name, res.StatusCode)}, true, retryAfter(res)
	case res.StatusCode >= 300:
		h.count(app, attempt4xx)
		return Reply{Err: fmt.Errorf("apps: %s answered %d", app.Name, res.StatusCode)}, false, 0
	}
	h.count(app, attemptOK)
	if err != nil {
		if ctx.Err() != nil {
			return Reply{Err: ctx.Err()}, false, 0
		}
		return Reply{Err: fmt.Errorf("apps: reading %s's response: %w", app.Name, err)}, true, 0
	}
	if len(data) > maxResponse {
		return Reply{Err: fmt.Errorf("apps: %s's response is over %d bytes", app.Name, maxResponse)}, false, 0
	}
	return parseResponse(res, data), false, 0
}

// count counts an attempt. 408 and 429 count as 4xx only; 5xx as 5xx.
func (h *Hooks) count(app *App, result string) {
	h.attempts.WithLabelValues(app.Name, result).Inc()
}

// parseResponse reads an app's 2xx: 202 (or 204) means the answer comes
// later; an application/sdp body is the answer; JSON is a Response.
func parseResponse(res *http.Response, data []byte) Reply {
	if res.StatusCode == http.StatusAccepted || res.StatusCode == http.StatusNoContent {
		return Reply{Later: true}
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch mt {
	case "application/sdp":
		if len(bytes.TrimSpace(data)) == 0 {
			return Reply{Err: errors.New("apps: empty SDP answer")}
		}
		return Reply{Answer: data}
	case "application/json":
		var r Response
		if err := json.Unmarshal(data, &r); err != nil {
			return Reply{Err: fmt.Errorf("apps: response: %w", err)}
		}
		switch {
		case r.Answer != "" && r.Reject != 0:
			return Reply{Err: errors.New("apps: response both answers and rejects")}
		case r.Answer != "":
			return Reply{Answer: []byte(r.Answer)}
		case r.Reject >= 400 && r.Reject <= 699:
			return Reply{Reject: r.Reject}
		case r.Reject != 0:
			return Reply{Err: fmt.Errorf("apps: reject %d: want a SIP status 400-699", r.Reject)}
		}
		return Reply{Err: errors.New(`apps: response has neither "answer" nor "reject"`)}
	}
	return Reply{Err: fmt.Errorf("apps: response of type %q: want application/sdp or application/json, or 202", mt)}
}

// retryAfter reads a delay in seconds from Retry-After (dates are not
// worth honouring for a ringing call).
func retryAfter(res *http.Response) time.Duration {
	s, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

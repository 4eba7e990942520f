package b2bua

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sdp"
)

// PlaceRequest is a call a web app places through the HTTP API: its
// browser's WebRTC offer (complete, no trickle) to a SIP user or number.
type PlaceRequest struct {
	// To is a user name, a number or a sip: URI (only its user part
	// counts); "echo" reaches the echo extension in standalone mode.
	To string
	// From is the caller's user part (default "api").
	From string
	// Offer is the browser's SDP offer.
	Offer []byte
	// Early returns the answer with the first early media (183) rather
	// than at answer time.
	Early bool
}

// ErrNotFound is returned for an unknown call id.
var ErrNotFound = errors.New("b2bua: no such call")

// userOf returns the user part of a user name, number or SIP URI.
func userOf(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(strings.ToLower(s), "sip:") || strings.HasPrefix(strings.ToLower(s), "sips:") {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil || u.User == "" {
			return "", fmt.Errorf("%q is not a SIP URI with a user", s)
		}
		s = u.User
	}
	if s == "" || len(s) > 128 || strings.ContainsAny(s, " \t\r\n<>\"@:;,") {
		return "", fmt.Errorf("%q is not a user name or number", s)
	}
	return s, nil
}

// apiCaller is a caller waiting on an HTTP request.
type apiCaller struct {
	early bool
	once  sync.Once
	res   chan apiResult
}

type apiResult struct {
	answer []byte
	err    error
}

func (a *apiCaller) deliver(r apiResult) { a.once.Do(func() { a.res <- r }) }

func (a *apiCaller) progress(_ int, body []byte) {
	if a.early && len(body) > 0 {
		a.deliver(apiResult{answer: body})
	}
}

func (a *apiCaller) answered(body []byte) (*sip.Request, error) {
	a.deliver(apiResult{answer: body})
	return nil, nil
}

func (a *apiCaller) failed(code int, reason string, _ []sip.Header) {
	a.deliver(apiResult{err: sipError(code, reason, nil)})
}

// Place places a call for a web app. It returns once the callee answered
// (or sent early media, with Early) with the SDP answer for the app's
// browser; the call then lives on until either side hangs up. If ctx ends
// first the call is cancelled.
func (e *Engine) Place(ctx context.Context, r PlaceRequest) (string, []byte, error) {
	user, err := userOf(r.To)
	if err != nil {
		return "", nil, sipError(400, "", err)
	}
	from := "api"
	if r.From != "" {
		if from, err = userOf(r.From); err != nil {
			return "", nil, sipError(400, "", err)
		}
	}
	offer, err := sdp.Parse(r.Offer)
	if err != nil {
		return "", nil, err
	}
	if !offer.IsWebRTC() {
		return "", nil, sipError(488, "", errors.New("the offer is not a WebRTC offer"))
	}
	if err := e.admitState(); err != nil {
		return "", nil, err
	}
	release, err := e.admitCall(from, user)
	if err != nil {
		return "", nil, err
	}
	tgt, err := e.resolve(fromBrowser, user, true)
	if err != nil {
		release()
		return "", nil, err
	}
	forks := e.forkTargets(tgt) // several registrations to ring (ringall.go)
	c := e.newCall(from, user)
	c.api = true
	c.release, c.slot = release, true
	if len(forks) > 1 {
		e.completeForkedCall(c, nil, kindWebRTC, forks)
	} else {
		e.completeCall(c, nil, kindWebRTC, tgt, "")
	}
	if err := e.register(c); err != nil {
		release()
		return "", nil, err
	}
	c.log.Info("api call")
	ac := &apiCaller{early: r.Early, res: make(chan apiResult, 1)}
	go c.run(func() { // the call's loop
		if tgt.echo {
			c.runEcho(offer, ac)
			return
		}
		if tgt.app != nil {
			c.runApp(offer, ac)
			return
		}
		if len(forks) > 1 {
			c.runFork(nil, offer, forks, "", ac)
			return
		}
		c.runInvite(nil, offer, tgt, ac)
	})
	select {
	case res := <-ac.res:
		if res.err != nil {
			return c.ID, nil, res.err
		}
		return c.ID, res.answer, nil
	case <-ctx.Done():
		c.Hangup(487, "api cancel")
		return c.ID, nil, sipError(487, "", ctx.Err())
	}
}

// Hangup ends a call by id.
func (e *Engine) Hangup(id string) error {
	c, ok := e.Call(id)
	if !ok {
		return ErrNotFound
	}
	c.Hangup(200, "api hangup")
	return nil
}

// dtmfDuration is each digit's duration in SIP INFO (ms): what phones send.
const dtmfDuration = 160

// ErrDTMFInBand is returned by SendDTMF when the callee did not list INFO
// in Allow: the digits must go in the media as RFC 4733 events, which the
// caller's browser sends itself (the dataplane relays them with the
// callee's payload type).
var ErrDTMFInBand = sipError(501, "", errors.New("the callee takes no SIP INFO: send RFC 4733 telephone-events in the media"))

// SendDTMF sends digits to the callee as SIP INFO application/dtmf-relay,
// one request per digit, in order, when the callee lists INFO in Allow;
// otherwise it returns ErrDTMFInBand. (The dataplane cannot generate RFC
// 4733 events; a browser's RTCDTMFSender can, and the dataplane maps
// their payload type.) It runs on the caller's goroutine, not the call's
// loop: it reads the published state and uses the callee's dialog, which
// has its own lock.
func (c *Call) SendDTMF(ctx context.Context, digits string) error {
	if c.State() != StateAnswered {
		return sipError(481, "", errors.New("call not answered"))
	}
	l := c.legsNow()[1]
	if l == nil || l.d == nil {
		return ErrDTMFInBand
	}
	if !l.info.Load() {
		return ErrDTMFInBand
	}
	for _, d := range digits {
		body := fmt.Sprintf("Signal=%c\r\nDuration=%d\r\n", d, dtmfDuration)
		res, err := l.d.send(ctx, l.d.request(sip.INFO, []byte(body), "application/dtmf-relay"))
		if err != nil {
			return sipError(408, "", err)
		}
		if !res.IsSuccess() {
			return sipError(res.StatusCode, res.Reason, nil)
		}
	}
	return nil
}

package b2bua

import (
	"errors"
	"fmt"
	"math"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// Reasons a call or request is refused before it goes anywhere, besides
// the dial plan's: they label strait_calls_refused_total.
const (
	// refusedUnregistered: a browser in trunk mode that holds no live
	// registration accepted by the upstream.
	refusedUnregistered = "unregistered"
	// refusedIdentity: a From that is not the identity registered on the
	// flow.
	refusedIdentity = "identity"
)

// authorize decides whether the sender of an out-of-dialog request may
// place it, and returns the identity it acts as (the caller's user part
// Strait sends on). It reports false after answering the request itself.
//
//   - From the upstream: trusted, as its From says.
//   - From a browser in trunk mode: only over a WebSocket that holds a
//     live registration the upstream accepted, and only as the user
//     registered on it. Trunks commonly trust the SBC's address, so
//     anything else is free calls for whoever opens a WebSocket (toll
//     fraud). Unless PBXAuthenticatesCalls says the upstream challenges
//     every INVITE itself.
//   - Standalone: a caller that registered from where it calls, or that
//     answers a digest challenge (407) for its From user.
func (e *Engine) authorize(req *sip.Request, tx sip.ServerTransaction, s side) (string, bool) {
	from := req.From().Address.User
	if e.trunk() {
		if s != fromBrowser || e.cfg.PBXAuthenticatesCalls {
			return from, s != 0
		}
		aors := e.cfg.Registry.FromSource(req.Source())
		if len(aors) == 0 {
			e.refused(refusedUnregistered, req, from)
			e.st.Respond(tx, req, 403, "Forbidden: register before calling", nil)
			return "", false
		}
		for _, aor := range aors {
			if aor == from {
				return aor, true
			}
		}
		e.refused(refusedIdentity, req, from)
		e.st.Respond(tx, req, 403, "Forbidden: From is not the registered user", nil)
		return "", false
	}
	d := e.cfg.Digest
	if d == nil {
		return from, true
	}
	for _, aor := range e.cfg.Registry.FromSource(req.Source()) {
		if aor == from {
			return from, true
		}
	}
	if ok, retry := e.cfg.AuthGuard.Allow(req.Source(), req.Transport()); !ok {
		e.st.Respond(tx, req, 403, "Forbidden", nil, sipnet.RetryAfter(retry))
		return "", false
	}
	res := d.Check(req, "Proxy-Authorization")
	if res.Verdict == registrar.Granted && res.User == from {
		e.cfg.AuthGuard.Success(req.Source())
		return from, true
	}
	if res.Verdict == registrar.Granted {
		res.Reason = registrar.ReasonIdentity
	}
	e.cfg.Metrics.AuthFailure(res.Reason)
	if registrar.GuessingFailure(res.Reason) {
		who := res.User
		if who == "" {
			who = from
		}
		e.cfg.AuthGuard.Failure(req.Source(), who)
	}
	e.st.Respond(tx, req, 407, "", nil, d.ChallengeHeaders("Proxy-Authenticate", res.Verdict == registrar.Stale)...)
	return "", false
}

// refused counts and logs a request refused before it became a call.
func (e *Engine) refused(reason string, req *sip.Request, from string) {
	e.cfg.Metrics.CallRefused(reason)
	e.log.Info("request refused", "reason", reason, "method", req.Method, "from", from,
		"to", req.Recipient.User, "source", req.Source(), "transport", req.Transport())
}

// admitCall applies the dial plan to a call from user to dest. On success
// the caller must call release exactly once when the call ends. A refusal
// is counted, logged and returned as an *Error carrying the
// *dialplan.Refusal.
func (e *Engine) admitCall(user, dest string) (release func(), err error) {
	if e.cfg.Guard == nil {
		return func() {}, nil
	}
	release, err = e.cfg.Guard.Admit(user, dest)
	if err == nil {
		return release, nil
	}
	var r *dialplan.Refusal
	if !errors.As(err, &r) {
		return nil, sipError(500, "", err)
	}
	e.cfg.Metrics.CallRefused(string(r.Reason))
	e.log.Info("call refused by the dial plan", "reason", r.Reason, "from", user, "to", r.Dest, "rule", r.Rule)
	return nil, sipError(r.Status, r.Phrase, r)
}

// refusalHeaders are the headers a refusal's response carries: Retry-After
// for a rate limit (RFC 3261 section 20.33).
func refusalHeaders(err error) []sip.Header {
	var r *dialplan.Refusal
	if errors.As(err, &r) && r.RetryAfter > 0 {
		return []sip.Header{sip.NewHeader("Retry-After", fmt.Sprint(int(math.Ceil(r.RetryAfter.Seconds()))))}
	}
	return nil
}

package b2bua

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// side classifies where a request came from.
type side int

// sideOf classifies a new request's sender. From the SIP side, in trunk
// mode, only an upstream (see upstreamOf) or a --sip-trust range may send
// (both count as the upstream's side); in standalone mode, when ranges
// are configured, only they may. Anything else is counted and reported
// false: the caller answers 403.
func (e *Engine) sideOf(req *sip.Request) (side, bool) {
	if sipnet.IsWebSocket(req.Transport()) {
		return fromBrowser, true
	}
	if e.trunk() {
		if _, ok := e.upstreamOf(req); ok || e.inTrust(req) {
			return fromUpstream, true
		}
		e.untrusted(req)
		return 0, false
	}
	if len(e.cfg.Trust) > 0 && !e.inTrust(req) {
		e.untrusted(req)
		return 0, false
	}
	return fromDevice, true
}

// trunk reports whether Strait relays to upstreams (not standalone).
func (e *Engine) trunk() bool { return e.cfg.Upstreams != nil }

// Trunk reports whether the engine runs in trunk mode (upstreams set).
func (e *Engine) Trunk() bool { return e.trunk() }

// target is where a request for a user goes.
type target struct {
	echo     bool
	upstream bool
	attempts []upstream.Target // toward the upstreams: the targets to try, in order
	replaces string            // the Replaces the INVITE carries (replaces.go), if any
	binding  registrar.Binding
	// bindings are the callee's live bindings as resolve looked them up
	// (the most recent first; standalone mode): the registrations a
	// forked call rings, without a second lookup (forkTargets).
	bindings []registrar.Binding
	user     string    // the callee's user part
	app      *apps.App // a web app takes the call (app.go)
}

// resolve finds where an out-of-dialog request from s for user goes.
func (e *Engine) resolve(s side, user string, invite bool) (target, error) {
	if invite && e.cfg.Apps != nil {
		// Numbers routed to a web app, from whichever side (app.go).
		if n, err := dialplan.Normalize(user); err == nil {
			if a, ok := e.cfg.Apps.Match(n); ok {
				return target{app: a, user: user}, nil
			}
		}
	}
	if e.trunk() {
		switch s {
		case fromBrowser:
			order := e.cfg.Upstreams.Order()
			if len(order) == 0 {
				return target{}, sipError(503, "Service Unavailable: no upstream address", errors.New("no upstream target resolved"))
			}
			return target{upstream: true, user: user, attempts: order}, nil
		case fromUpstream:
			if b, ok := e.cfg.Registry.ByKey(user); ok {
				return e.reachable(b, user)
			}
			if e.cfg.Registry.FlowFailed(user) {
				return target{}, errFlowFailed
			}
			if bs := e.cfg.Registry.Lookup(user); len(bs) > 0 {
				return e.reachable(bs[0], user)
			}
			if e.cfg.Registry.FlowFailedAOR(user) {
				return target{}, errFlowFailed
			}
			return target{}, errOffline
		}
		return target{}, sipError(403, "", nil)
	}
	if invite && user == EchoUser {
		return target{echo: true, user: user}, nil
	}
	if bs := e.cfg.Registry.Lookup(user); len(bs) > 0 {
		// The most recent binding that can be reached: a browser tab
		// whose WebSocket closed does not hide the user's other ones.
		for _, b := range bs {
			if t, err := e.reachable(b, user); err == nil {
				t.bindings = bs
				return t, nil
			}
		}
		return target{}, errFlowFailed
	}
	if e.cfg.Registry.FlowFailedAOR(user) {
		return target{}, errFlowFailed
	}
	if e.cfg.Digest != nil && !e.cfg.Digest.Known(user) {
		return target{}, errNoRoute
	}
	return target{}, errOffline
}

// reachable checks that a browser binding's flow is still there; one
// another control plane holds is reached through it (see Relay).
func (e *Engine) reachable(b registrar.Binding, user string) (target, error) {
	if b.WebSocket() && !e.heldHere(b.Holder) {
		flow, err := e.relayFlow(b.Holder, b.Source, "")
		if err != nil {
			return target{}, errFlowFailed
		}
		b.Source = flow
		return target{binding: b, user: b.AOR}, nil
	}
	if b.WebSocket() && e.cfg.Flows != nil && !e.cfg.Flows.Open(b.Source) {
		return target{}, errFlowFailed
	}
	return target{binding: b, user: b.AOR}, nil
}

// Relay reaches a browser whose WebSocket another control plane holds
// (package cluster): Flow returns the name under which this process's
// SIP stack reaches the flow (the browser's address at holder), set up
// on first use; an error when the holder is gone. callID, when set, names
// a dialog of this process's with the browser (one carried on after a
// restart or takeover): the holder passes the browser's requests in it
// here even before this process sent anything in it.
type Relay interface {
	Flow(holder, flow, callID string) (string, error)
}

// SetRelay installs the relay (nil: bindings held elsewhere are
// unreachable, 430).
func (e *Engine) SetRelay(r Relay) {
	if r == nil {
		e.relay.Store(nil)
		return
	}
	e.relay.Store(&r)
}

// heldHere reports whether a binding's flow holder is this process.
func (e *Engine) heldHere(holder string) bool { return holder == "" || holder == e.cfg.Instance }

// relayFlow is Relay.Flow, failing without a relay.
func (e *Engine) relayFlow(holder, flow, callID string) (string, error) {
	r := e.relay.Load()
	if r == nil {
		return "", errFlowFailed
	}
	return (*r).Flow(holder, flow, callID)
}

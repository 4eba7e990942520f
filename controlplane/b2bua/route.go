package b2bua

import (
	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// side classifies where a request came from.
type side int

func (e *Engine) sideOf(req *sip.Request) (side, bool) {
	if sipnet.IsWebSocket(req.Transport()) {
		return fromBrowser, true
	}
	if u := e.cfg.Upstream; u != nil {
		host, _, err := sip.ParseAddr(req.Source())
		if err == nil && e.isUpstream(host) {
			return fromUpstream, true
		}
		return 0, false
	}
	return fromDevice, true
}

// target is where a request for a user goes.
type target struct {
	echo     bool
	upstream bool
	binding  registrar.Binding
	user     string // the callee's user part
}

// resolve finds where an out-of-dialog request from s for user goes.
func (e *Engine) resolve(s side, user string, invite bool) (target, error) {
	if e.cfg.Upstream != nil {
		switch s {
		case fromBrowser:
			return target{upstream: true, user: user}, nil
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
		return e.reachable(bs[0], user)
	}
	if e.cfg.Registry.FlowFailedAOR(user) {
		return target{}, errFlowFailed
	}
	if e.cfg.Digest != nil && !e.cfg.Digest.Known(user) {
		return target{}, errNoRoute
	}
	return target{}, errOffline
}

// reachable checks that a browser binding's flow is still there.
func (e *Engine) reachable(b registrar.Binding, user string) (target, error) {
	if b.WebSocket() && e.cfg.Flows != nil && !e.cfg.Flows.Open(b.Source) {
		return target{}, errFlowFailed
	}
	return target{binding: b, user: b.AOR}, nil
}

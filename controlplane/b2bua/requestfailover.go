package b2bua

import (
	"context"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// requestFailingOver sends the request build makes on d, a dialog Strait
// starts toward tgt (aimed at its first target by outbound), and returns
// the final response. Toward the upstreams it fails over as a new call
// does (invite.go, RFC 3263 section 4.3), with the same pieces: the
// targets in tgt's order (upstream.Set.Order: priority, DNS order,
// weight, targets down by their OPTIONS pings last), the same criterion
// (a transport error, no final response, or failover's 408 and 503), and
// aimAt to point the same dialog (Call-ID, tag) at the next target; build
// makes the request again, with the next CSeq. An attempt with a target
// left after it waits noResponseFailover for its final response (a
// non-INVITE server answers at once); the last one requestTimeout.
func (e *Engine) requestFailingOver(ctx context.Context, d *dialog, tgt target, build func() *sip.Request) (*sip.Response, error) {
	attempts := 1
	if tgt.upstream {
		attempts = len(tgt.attempts)
	}
	for i := 0; ; i++ {
		req := build()
		last := i == attempts-1
		wait := noResponseFailover
		if last {
			wait = requestTimeout
		}
		actx, cancel := context.WithTimeout(ctx, wait)
		res, err := d.send(actx, req)
		cancel()
		var why string
		switch {
		case last || ctx.Err() != nil:
			return res, err
		case err != nil:
			why = err.Error()
		case failover(res.StatusCode):
			why = sipnet.ReasonPhrase(res.StatusCode)
		default:
			return res, nil
		}
		next := tgt.attempts[i+1]
		e.log.Info("upstream target failed; trying the next", "method", string(req.Method), "target", d.upstreamKey(),
			"why", why, "next", next.Key())
		aimAt(d, next, tgt.user)
	}
}

// upstreamTarget returns the upstream target the dialog belongs to, if
// any.
func (d *dialog) upstreamTarget() (upstream.Target, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.up == nil {
		return upstream.Target{}, false
	}
	return *d.up, true
}

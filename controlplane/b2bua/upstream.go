package b2bua

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// upstreamOf finds the upstream a request from the SIP side came from
// (issue: the source IP alone proves nothing; any process on the PBX's
// host, or anyone who can spoof its address over UDP, would pass):
//
//   - over UDP, its source address and port are one of an upstream's
//     targets (as resolved in the background: no DNS here);
//   - over TCP, its source address is a TCP target's (an upstream opens
//     connections from ports of its choosing);
//   - over TLS, the connection's peer certificate chains to the upstream
//     CAs and names one of the TLS upstreams' hosts, wherever it comes
//     from.
func (e *Engine) upstreamOf(req *sip.Request) (upstream.Target, bool) {
	set := e.cfg.Upstreams
	if set == nil {
		return upstream.Target{}, false
	}
	transport := strings.ToUpper(req.Transport())
	if transport == sipnet.TLS {
		st, ok := e.st.TLSPeer(req.Source())
		if !ok {
			return upstream.Target{}, false
		}
		src, _ := netip.ParseAddrPort(req.Source())
		verified := map[string]bool{} // by host: the certificate names it
		var found upstream.Target
		ok = false
		for _, t := range set.All() {
			if t.Transport != sipnet.TLS {
				continue
			}
			v, seen := verified[t.Host()]
			if !seen {
				v = upstream.VerifyPeer(st, t.Host(), e.cfg.UpstreamRoots) == nil
				verified[t.Host()] = v
			}
			if !v {
				continue
			}
			if !ok || t.Addr.Addr() == src.Addr().Unmap() && found.Addr.Addr() != src.Addr().Unmap() {
				found, ok = t, true // the target at the peer's address if there is one
			}
		}
		return found, ok
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return upstream.Target{}, false
	}
	return set.Match(transport, src)
}

// inTrust reports whether a request's source address is in a --sip-trust
// range.
func (e *Engine) inTrust(req *sip.Request) bool {
	if len(e.cfg.Trust) == 0 {
		return false
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return false
	}
	a := src.Addr().Unmap()
	for _, p := range e.cfg.Trust {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// untrusted counts and logs a request from the SIP side that no upstream
// or trusted range sent.
func (e *Engine) untrusted(req *sip.Request) {
	e.cfg.Metrics.SIPDropped(req.Transport(), metrics.DropUntrusted)
	e.log.Debug("request from an untrusted source", "method", req.Method, "source", req.Source(), "transport", req.Transport())
}

// trustedSource applies sideOf's rule to a request handled elsewhere
// (REGISTER): false after answering 403.
func (e *Engine) trustedSource(req *sip.Request, tx sip.ServerTransaction) bool {
	if _, ok := e.sideOf(req); ok {
		return true
	}
	e.st.Respond(tx, req, 403, "Forbidden: untrusted source", nil)
	return false
}

// upstreamDialog records on a dialog with an upstream which target it
// belongs to: its in-dialog requests go there (unless a route set says
// otherwise), never to another target, and REFER targets name its host.
func upstreamDialog(d *dialog, t upstream.Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up = &t
	d.dest = t.Dest()
}

// optionsTimeout bounds one OPTIONS ping (and no ping outlasts the
// interval between two).
const optionsTimeout = 8 * time.Second

// pingUpstreams sends OPTIONS to every upstream target every
// OptionsInterval, all at once, and records which answer (any response
// means alive): new calls try those that did first.
func (e *Engine) pingUpstreams() {
	defer e.wg.Done()
	// The first ping waits an interval too: a PBX that just started is
	// given time, and a scripted test PBX sees calls before pings.
	t := time.NewTicker(e.cfg.OptionsInterval)
	defer t.Stop()
	var known map[string]bool
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		targets := e.cfg.Upstreams.All()
		var wg sync.WaitGroup
		for _, tg := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.pingTarget(tg)
			}()
		}
		wg.Wait()
		now := map[string]bool{}
		for _, tg := range targets {
			now[tg.Key()] = true
		}
		for k := range known {
			if !now[k] {
				e.cfg.Metrics.ForgetUpstreamTarget(k)
			}
		}
		known = now
		e.cfg.Metrics.SetUpstreamUp(e.cfg.Upstreams.Up())
	}
}

// pingTarget sends one OPTIONS to a target and records the outcome.
func (e *Engine) pingTarget(tg upstream.Target) {
	ruri := sip.Uri{Scheme: "sip", Host: tg.Host(), Port: tg.URIPort(), UriParams: sip.NewParams(), Headers: sip.NewParams()}
	if tg.Transport != sipnet.UDP {
		ruri.UriParams.Add("transport", strings.ToLower(tg.Transport))
	}
	req := sip.NewRequest(sip.OPTIONS, ruri)
	local := sip.Uri{Scheme: "sip", User: "strait", Host: e.st.Host()}
	from := &sip.FromHeader{Address: local, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: tg.Host()}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	e.st.Prepare(req, sipnet.Route{Transport: tg.Transport, Dest: tg.Dest()})
	ctx, cancel := context.WithTimeout(context.Background(), min(optionsTimeout, e.cfg.OptionsInterval))
	res, err := e.st.Do(ctx, req)
	cancel()
	alive := err == nil && res != nil
	e.cfg.Metrics.SetUpstreamTarget(tg.Key(), alive)
	if e.cfg.Upstreams.SetUp(tg, alive) {
		if alive {
			e.log.Info("upstream target answers OPTIONS again", "upstream", tg.Spec.URI, "target", tg.Key())
		} else {
			e.log.Warn("upstream target does not answer OPTIONS; new calls try it last", "upstream", tg.Spec.URI, "target", tg.Key(), "err", err)
		}
	}
}

// UpstreamUp reports whether an upstream target answered its last
// OPTIONS ping (true when there is no upstream, no pinging, or no ping
// yet).
func (e *Engine) UpstreamUp() bool {
	if e.cfg.Upstreams == nil || e.cfg.OptionsInterval == 0 {
		return true
	}
	return e.cfg.Upstreams.Up()
}

// noResponseFailover is how long a new call waits for a first response
// from an upstream target before trying the next one (8*T1: a target
// that answers nothing, not even 100 Trying, in 4 s is down or lost the
// request).
const noResponseFailover = 8 * sipnet.T1

// upstreamKey names the dialog's upstream target for logs.
func (d *dialog) upstreamKey() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.up == nil {
		return ""
	}
	return d.up.Key()
}

// failover reports the final responses after which a new call tries the
// next upstream target (RFC 3263 section 4.3: 503; a timeout, 408, too).
func failover(code int) bool { return code == 503 || code == 408 }

package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/authguard"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// upstreamTimeout bounds a relayed REGISTER (Timer F is 32 s; a browser
// gives up well before).
const upstreamTimeout = 16 * time.Second

// minExpiry is the shortest lifetime granted: shorter asks get 423 with
// Min-Expires (RFC 3261 section 10.3 step 7).
const minExpiry = 60

// Config configures a Registrar.
type Config struct {
	// Stack sends the relayed REGISTERs and the responses.
	Stack *sipnet.Stack
	// Registry stores the bindings.
	Registry *Registry
	// Upstreams are the PBXs in trunk mode; nil runs the local registrar.
	Upstreams *upstream.Set
	// Digest authenticates users in standalone mode; nil accepts anyone
	// (the open demo mode).
	Digest *Digest
	// Guard blocks sources that keep failing authentication (here, or at
	// the upstream in trunk mode); nil blocks nothing.
	Guard *authguard.Guard
	// Metrics counts authentication failures; nil counts nothing.
	Metrics *metrics.Metrics
	// MaxExpiry caps granted lifetimes and is the default.
	MaxExpiry time.Duration
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Registrar handles REGISTER. It is safe for concurrent use.
type Registrar struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // serialises relays of one device
}

// New returns a registrar.
func New(cfg Config) *Registrar {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Registrar{cfg: cfg, log: cfg.Log}
}

// contact is one Contact of a REGISTER.
type contact struct {
	uri             sip.Uri
	expires         int
	instance, regID string
}

// parseRegister reads the AOR and the contacts of a REGISTER; star is true
// for "Contact: *".
func parseRegister(req *sip.Request, def int) (aor string, cs []contact, star bool, err error) {
	to := req.To()
	if to == nil || to.Address.User == "" {
		return "", nil, false, fmt.Errorf("no user in To")
	}
	aor = to.Address.User
	hdrExp := def
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return "", nil, false, fmt.Errorf("bad Expires %q", h.Value())
		}
		hdrExp = n
	}
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return "", nil, false, fmt.Errorf("bad Contact")
		}
		if c.Address.Wildcard || strings.TrimSpace(c.Value()) == "*" {
			if hdrExp != 0 {
				return "", nil, false, fmt.Errorf("contact * needs Expires: 0")
			}
			star = true
			continue
		}
		if c.Address.Host == "" {
			return "", nil, false, fmt.Errorf("contact without host")
		}
		e := hdrExp
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return "", nil, false, fmt.Errorf("bad Contact expires %q", v)
			}
			e = n
		}
		inst, _ := c.Params.Get("+sip.instance")
		reg, _ := c.Params.Get("reg-id")
		cs = append(cs, contact{uri: *c.Address.Clone(), expires: e, instance: strings.Trim(inst, "\""), regID: reg})
	}
	if star && len(cs) > 0 {
		return "", nil, false, fmt.Errorf("contact * with other contacts")
	}
	return aor, cs, star, nil
}

// Handle answers a REGISTER: relayed upstream in trunk mode, locally
// otherwise.
func (r *Registrar) Handle(req *sip.Request, tx sip.ServerTransaction) {
	def := int(r.cfg.MaxExpiry / time.Second)
	aor, cs, star, err := parseRegister(req, def)
	if err != nil {
		r.cfg.Stack.Respond(tx, req, 400, "Bad Request: "+err.Error(), nil)
		return
	}
	log := r.log.With("aor", aor, "source", req.Source(), "transport", req.Transport())
	if r.cfg.Upstreams != nil {
		r.relay(req, tx, aor, cs, star, log)
		return
	}
	r.local(req, tx, aor, cs, star, log)
}

// local is the standalone registrar.
func (r *Registrar) local(req *sip.Request, tx sip.ServerTransaction, aor string, cs []contact, star bool, log *slog.Logger) {
	st := r.cfg.Stack
	if d := r.cfg.Digest; d != nil {
		if !r.allow(req, tx) {
			return
		}
		res := d.Check(req, "Authorization")
		if res.Verdict != Granted || res.User != aor {
			if res.Verdict == Granted {
				res.Reason = ReasonIdentity
			}
			if res.Reason != "" {
				log.Debug("registration refused", "user", res.User, "reason", res.Reason)
			}
			r.failed(req, res, aor)
			st.Respond(tx, req, 401, "", nil, d.ChallengeHeaders("WWW-Authenticate", res.Verdict == Stale)...)
			return
		}
		r.cfg.Guard.Success(req.Source())
	}
	now := time.Now()
	if star {
		for _, b := range r.cfg.Registry.Lookup(aor) {
			r.cfg.Registry.Remove(b.Key)
		}
	}
	for _, c := range cs {
		if c.expires > 0 && c.expires < minExpiry {
			min := sip.NewHeader("Min-Expires", strconv.Itoa(minExpiry))
			st.Respond(tx, req, 423, "", nil, min)
			return
		}
	}
	for _, c := range cs {
		if c.expires == 0 {
			if b, ok := r.cfg.Registry.Find(aor, c.uri, c.instance, c.regID); ok {
				r.cfg.Registry.Remove(b.Key)
				log.Info("unregistered", "contact", c.uri.String())
			}
			continue
		}
		e := min(c.expires, int(r.cfg.MaxExpiry/time.Second))
		r.cfg.Registry.Put(Binding{AOR: aor, Contact: c.uri, Instance: c.instance, RegID: c.regID,
			Transport: req.Transport(), Source: req.Source(), Expires: now.Add(time.Duration(e) * time.Second)})
		log.Info("registered", "contact", c.uri.String(), "expires", e)
	}
	st.RespondWith(tx, r.okResponse(req, aor))
}

// allow answers 403 with Retry-After, and reports false, when req's
// source is blocked for failing authentication (package authguard): its
// credentials are not even looked at, and in trunk mode its REGISTER
// never reaches the PBX.
func (r *Registrar) allow(req *sip.Request, tx sip.ServerTransaction) bool {
	ok, retry := r.cfg.Guard.Allow(req.Source(), req.Transport())
	if !ok {
		r.cfg.Stack.Respond(tx, req, 403, "Forbidden", nil, sipnet.RetryAfter(retry))
	}
	return ok
}

// failed counts a refused credential and, unless the refusal is part of
// a normal exchange (no credentials yet, an expired nonce), feeds the
// guard under the user the credentials claim (else the AOR).
func (r *Registrar) failed(req *sip.Request, res Result, aor string) {
	r.cfg.Metrics.AuthFailure(res.Reason)
	if GuessingFailure(res.Reason) {
		user := res.User
		if user == "" {
			user = aor
		}
		r.cfg.Guard.Failure(req.Source(), user)
	}
}

// GuessingFailure reports whether a refusal reason counts toward blocking
// its source: everything but no credentials at all and a stale nonce
// (which a client with the password answers at once).
func GuessingFailure(reason string) bool { return reason != "" && reason != ReasonStale }

// okResponse is a 200 to a REGISTER listing the AOR's bindings with their
// remaining lifetimes.
func (r *Registrar) okResponse(req *sip.Request, aor string) *sip.Response {
	res := r.cfg.Stack.Response(req, 200, "", nil)
	now := time.Now()
	for _, b := range r.cfg.Registry.Lookup(aor) {
		h := &sip.ContactHeader{Address: *b.Contact.Clone(), Params: sip.NewParams()}
		if b.Instance != "" {
			h.Params.Add("+sip.instance", "\""+b.Instance+"\"")
		}
		if b.RegID != "" {
			h.Params.Add("reg-id", b.RegID)
		}
		h.Params.Add("expires", strconv.Itoa(int(b.Expires.Sub(now).Round(time.Second)/time.Second)))
		res.AppendHeader(h)
	}
	if len(r.cfg.Registry.Lookup(aor)) > 0 {
		res.AppendHeader(sip.NewHeader("Supported", "outbound"))
	}
	return res
}

// relay forwards a REGISTER to the PBX under Strait's own Contact and
// passes the PBX's answer (a digest challenge included) back.
func (r *Registrar) relay(req *sip.Request, tx sip.ServerTransaction, aor string, cs []contact, star bool, log *slog.Logger) {
	st := r.cfg.Stack
	if star || len(cs) != 1 {
		// A browser registers one contact; anything else is not worth
		// translating.
		st.Respond(tx, req, 403, "Forbidden: register one contact at a time", nil)
		return
	}
	c := cs[0]
	if !r.allow(req, tx) {
		return
	}
	r.mu.Lock()
	b, known := r.cfg.Registry.Find(aor, c.uri, c.instance, c.regID)
	if !known {
		b = Binding{AOR: aor, Contact: c.uri, Instance: c.instance, RegID: c.regID, Key: newKey()}
	}
	if b.upCallID == "" {
		b.upCallID, b.upFromTag = newKey()+"@strait", newKey()
	}
	b.upCSeq++
	var auth sip.Header
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		if h := req.GetHeader(name); h != nil {
			auth = sip.NewHeader(name, h.Value())
		}
	}
	if auth != nil {
		b.upAuth = auth
	}
	if known {
		r.cfg.Registry.Keep(b) // keep the CSeq and credentials even if the PBX says no
	}
	r.mu.Unlock()

	expires := min(c.expires, int(r.cfg.MaxExpiry/time.Second))
	res, tg, err := r.send(&b, expires, auth)
	if err == nil {
		b.upTarget = tg.Key()
	}
	if known {
		r.cfg.Registry.Keep(b) // the CSeq failover advanced, the target that took it
	}
	if err != nil {
		log.Warn("upstream REGISTER failed", "err", err)
		st.Respond(tx, req, 503, "Upstream Unreachable", nil)
		return
	}
	switch {
	case auth != nil && (res.StatusCode == 401 || res.StatusCode == 407 || res.StatusCode == 403):
		// The PBX refused the browser's credentials: a failure here too,
		// so that a source that keeps failing is blocked before the PBX's
		// own fail2ban bans Strait's address.
		r.cfg.Metrics.AuthFailure(ReasonUpstream)
		r.cfg.Guard.Failure(req.Source(), aor)
	case auth != nil && res.StatusCode < 300:
		r.cfg.Guard.Success(req.Source())
	}
	switch {
	case res.StatusCode == 401 || res.StatusCode == 407:
		// The challenge is the PBX's to make and the browser's to answer.
		var hdrs []sip.Header
		for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
			for _, h := range res.GetHeaders(name) {
				hdrs = append(hdrs, sip.NewHeader(name, h.Value()))
			}
		}
		if !known {
			// Remember the Call-ID and CSeq so the answer continues them.
			b.Expires = time.Now().Add(-time.Second) // not reachable until the PBX says so
			b.Source, b.Transport = req.Source(), req.Transport()
			r.cfg.Registry.Put(b)
		}
		st.Respond(tx, req, res.StatusCode, res.Reason, nil, hdrs...)
		return
	case res.StatusCode == 423:
		var hdrs []sip.Header
		if h := res.GetHeader("Min-Expires"); h != nil {
			hdrs = append(hdrs, sip.NewHeader("Min-Expires", h.Value()))
		}
		st.Respond(tx, req, 423, res.Reason, nil, hdrs...)
		return
	case res.StatusCode >= 300:
		log.Info("upstream refused registration", "status", res.StatusCode)
		code := res.StatusCode
		if code >= 500 {
			code = 503
		}
		st.Respond(tx, req, code, res.Reason, nil)
		return
	}
	granted := grantedExpiry(res, r.cfg.Stack.ContactURI(tg.Transport, b.Key), expires)
	if expires == 0 || granted == 0 {
		r.cfg.Registry.Remove(b.Key)
		log.Info("unregistered upstream", "key", b.Key)
		ok := st.Response(req, 200, "", nil)
		st.RespondWith(tx, ok)
		return
	}
	b.Transport, b.Source = req.Transport(), req.Source()
	b.Expires = time.Now().Add(time.Duration(granted) * time.Second)
	b = r.cfg.Registry.Put(b)
	log.Info("registered upstream", "key", b.Key, "expires", granted)
	ok := st.Response(req, 200, "", nil)
	h := &sip.ContactHeader{Address: *c.uri.Clone(), Params: sip.NewParams()}
	if c.instance != "" {
		h.Params.Add("+sip.instance", "\""+c.instance+"\"")
	}
	if c.regID != "" {
		h.Params.Add("reg-id", c.regID)
	}
	h.Params.Add("expires", strconv.Itoa(granted))
	ok.AppendHeader(h)
	ok.AppendHeader(sip.NewHeader("Supported", "outbound"))
	st.RespondWith(tx, ok)
}

// send relays a REGISTER for binding b upstream: first to the target that
// took the binding's last one, else in the order new calls use, on to the
// next target after a transport error, 503 or 408 (RFC 3263 section 4.3).
// The binding's CSeq advances with each REGISTER sent.
func (r *Registrar) send(b *Binding, expires int, auth sip.Header) (*sip.Response, upstream.Target, error) {
	order := r.cfg.Upstreams.Order()
	for i, t := range order {
		if t.Key() == b.upTarget && i > 0 {
			order = append([]upstream.Target{t}, append(order[:i:i], order[i+1:]...)...)
			break
		}
	}
	if len(order) == 0 {
		return nil, upstream.Target{}, errors.New("no upstream address (not resolved)")
	}
	var lastErr error
	for i, t := range order {
		ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
		if i > 0 {
			b.upCSeq++ // a new transaction in the same registration
		}
		res, err := r.cfg.Stack.Do(ctx, r.upstreamRegister(*b, t, b.upCSeq, expires, auth))
		cancel()
		last := i == len(order)-1
		switch {
		case err != nil:
			lastErr = err
		case (res.StatusCode == 503 || res.StatusCode == 408) && !last:
			lastErr = fmt.Errorf("%s answered %d", t.Key(), res.StatusCode)
		default:
			return res, t, nil
		}
		if !last {
			r.log.Info("upstream target failed a REGISTER; trying the next", "target", t.Key(), "err", lastErr)
		}
	}
	return nil, upstream.Target{}, lastErr
}

// upstreamRegister builds the REGISTER Strait sends target t for binding b.
func (r *Registrar) upstreamRegister(b Binding, t upstream.Target, cseq uint32, expires int, auth sip.Header) *sip.Request {
	st := r.cfg.Stack
	ruri := sip.Uri{Scheme: "sip", Host: t.Host(), Port: t.URIPort()}
	req := sip.NewRequest(sip.REGISTER, ruri)
	aorURI := sip.Uri{Scheme: "sip", User: b.AOR, Host: t.Host()}
	from := &sip.FromHeader{Address: aorURI, Params: sip.NewParams()}
	from.Params.Add("tag", b.upFromTag)
	to := &sip.ToHeader{Address: aorURI, Params: sip.NewParams()}
	callID := sip.CallIDHeader(b.upCallID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
	ct := st.Contact(t.Transport, b.Key)
	req.AppendHeader(ct)
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	if auth != nil {
		req.AppendHeader(auth)
	}
	st.Prepare(req, sipnet.Route{Transport: t.Transport, Dest: t.Dest()})
	return req
}

// grantedExpiry is the lifetime the registrar granted our contact: its
// Contact's expires, else the Expires header, else what was asked.
func grantedExpiry(res *sip.Response, ours sip.Uri, asked int) int {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.User != ours.User {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			return n
		}
	}
	return asked
}

// FlowClosed drops the bindings that lived on a closed WebSocket flow and,
// in trunk mode, removes them upstream (best effort: with the browser's
// last credentials; a PBX that challenges again lets the binding lapse).
func (r *Registrar) FlowClosed(flow string) {
	gone := r.cfg.Registry.RemoveSource(flow)
	for _, b := range gone {
		r.log.Info("flow closed; binding removed", "aor", b.AOR, "key", b.Key, "flow", flow)
		if r.cfg.Upstreams == nil || b.upCallID == "" {
			continue
		}
		b.upCSeq++
		res, _, err := r.send(&b, 0, b.upAuth)
		if err != nil || res.StatusCode >= 300 {
			code := 0
			if res != nil {
				code = res.StatusCode
			}
			r.log.Info("upstream unregister not accepted; the binding will lapse", "aor", b.AOR, "status", code, "err", err)
		}
	}
}

// Sweep removes lapsed bindings; call it periodically.
func (r *Registrar) Sweep() { r.cfg.Registry.Expire() }

package b2bua

import (
	"net/url"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// Attended transfer and call pickup: the Replaces header (RFC 3891).
//
// A Replaces names a dialog by its Call-ID and tags, and Strait's two
// legs are two dialogs with nothing in common: a Replaces that crosses
// Strait must name the other leg's dialog instead. Two places:
//
//   - A REFER whose Refer-To carries ?Replaces= (a browser transferring
//     call A to the party of its call B, attended): the Replaces names the
//     browser's dialog of call B with Strait; the REFER that goes on to
//     the other side names call B's dialog on that side, as its far end
//     (the transfer target) sees it.
//   - An INVITE with a Replaces header naming one of Strait's dialogs
//     as its peer sees it (Strait's tag is the from-tag): the referee of
//     a transfer Strait relayed completing it, for instance between
//     browsers; it goes to that peer with the Replaces as it is.
//   - An INVITE with a Replaces header (the PBX completing such a
//     transfer, or picking up a call): it names Strait's dialog with the
//     sender in an existing call; the new call goes to that call's other
//     party (the same browser, on the same connection), and its INVITE
//     carries a Replaces naming the dialog that party has with Strait, so
//     that the browser swaps calls (JsSIP does, on its 'replaces' event).
//
// Section 3: the to-tag is the local tag of the UA that receives the
// Replaces, the from-tag the remote one. A Replaces that names no dialog
// of Strait's gets 481; one for a dialog its sender is not a party of is
// refused the same way (nobody may take over someone else's call).

// replaces is a parsed Replaces value.
type replaces struct {
	callID, toTag, fromTag string
	earlyOnly              bool
}

// parseReplaces parses callid;to-tag=X;from-tag=Y[;early-only].
func parseReplaces(v string) (replaces, bool) {
	parts := strings.Split(strings.TrimSpace(v), ";")
	r := replaces{callID: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "to-tag":
			r.toTag = strings.TrimSpace(val)
		case "from-tag":
			r.fromTag = strings.TrimSpace(val)
		case "early-only":
			r.earlyOnly = true
		}
	}
	ok := r.callID != "" && r.toTag != "" && r.fromTag != "" && len(v) <= 1024 &&
		!strings.ContainsAny(r.callID+r.toTag+r.fromTag, " \t\r\n<>\"?")
	return r, ok
}

// String writes the value back.
func (r replaces) String() string {
	s := r.callID + ";to-tag=" + r.toTag + ";from-tag=" + r.fromTag
	if r.earlyOnly {
		s += ";early-only"
	}
	return s
}

// replacedLeg finds Strait's leg a Replaces received names: Strait is
// the UA receiving it, so to-tag is Strait's tag and from-tag the peer's.
func (e *Engine) replacedLeg(r replaces) *leg {
	e.mu.Lock()
	l := e.dialogs[key(r.callID, r.toTag)]
	e.mu.Unlock()
	if l == nil || l.d == nil {
		return nil
	}
	l.d.mu.Lock()
	remote := l.d.remoteTag
	l.d.mu.Unlock()
	if remote != r.fromTag {
		return nil
	}
	return l
}

// across returns the Replaces that names, on the other leg of l's call,
// the dialog its far end has with Strait (the far end receives it: its
// tag is the to-tag).
func across(l *leg, earlyOnly bool) (replaces, *leg, bool) {
	o := l.c.other(l)
	if o == nil || o.d == nil {
		return replaces{}, nil, false
	}
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	if o.d.remoteTag == "" {
		return replaces{}, nil, false
	}
	return replaces{callID: o.d.callID, toTag: o.d.remoteTag, fromTag: o.d.localTag, earlyOnly: earlyOnly}, o, true
}

// referReplaces translates the ?Replaces= of a Refer-To URI that goes
// from leg from's side to the other: "" when there is none or it names no
// dialog of Strait's with the referrer's side.
func (e *Engine) referReplaces(u sip.Uri, from *leg) string {
	if u.Headers == nil {
		return ""
	}
	v, ok := u.Headers.Get("Replaces")
	if !ok {
		for _, k := range []string{"replaces", "REPLACES"} {
			if v, ok = u.Headers.Get(k); ok {
				break
			}
		}
	}
	if !ok {
		return ""
	}
	if dec, err := url.QueryUnescape(v); err == nil {
		v = dec
	}
	r, ok := parseReplaces(v)
	if !ok {
		return ""
	}
	l := e.replacedLeg(r)
	if l == nil || l.kind != from.kind || (from.d != nil && l.d.flow != from.d.flow) {
		return "" // not a dialog of the referrer's: a blind transfer, then
	}
	out, _, ok := across(l, r.earlyOnly)
	if !ok {
		return ""
	}
	return url.QueryEscape(out.String())
}

// inviteReplaces reads an INVITE's Replaces: the leg it names (sent by
// the party of that dialog), or an error status (481: no such dialog).
func (e *Engine) inviteReplaces(req *sip.Request) (*leg, replaces, int) {
	hs := slices.Collect(sipnet.HeadersNamed(req, "Replaces"))
	if len(hs) == 0 {
		return nil, replaces{}, 0
	}
	// RFC 3891 section 3: more than one Replaces MUST get 400.
	r, ok := parseReplaces(hs[0].Value())
	if !ok || len(hs) > 1 {
		return nil, replaces{}, 400
	}
	l := e.replacedLeg(r)
	if l == nil {
		// Not Strait's own dialog: maybe one of Strait's dialogs as its
		// peer sees it (a Replaces Strait put in a Refer-To, sent back by
		// the referee): the INVITE goes to that peer as it is.
		// Not from that peer itself, nor from its side of Strait (a PBX
		// names its own dialogs itself).
		if p := e.peerDialog(r); p != nil && p.c.State() != StateEnded && otherParty(p, req) {
			return p, r, 0
		}
		return nil, replaces{}, 481
	}
	if l.c.State() == StateEnded {
		return nil, replaces{}, 481
	}
	answered := l.c.State() == StateAnswered
	switch {
	case answered && r.earlyOnly:
		// Section 3: a confirmed dialog with early-only: 486.
		return nil, replaces{}, 486
	case !answered && l.d.uas:
		// Section 3: an early dialog this UA did not initiate: 481.
		return nil, replaces{}, 481
	}
	// Only a party of the dialog may replace it: the same connection for
	// a browser, the same side for a SIP peer.
	if l.d.flow != "" && l.d.flow != req.Source() || l.d.flow == "" && l.kind != kindPlain {
		return nil, replaces{}, 481
	}
	return l, r, 0
}

// peerDialog finds the leg whose dialog a Replaces names as Strait's peer
// on it sees it: Strait's tag is the from-tag, the peer's the to-tag.
func (e *Engine) peerDialog(r replaces) *leg {
	e.mu.Lock()
	l := e.dialogs[key(r.callID, r.fromTag)]
	e.mu.Unlock()
	if l == nil || l.d == nil {
		return nil
	}
	l.d.mu.Lock()
	remote := l.d.remoteTag
	l.d.mu.Unlock()
	if remote != r.toTag {
		return nil
	}
	return l
}

// otherParty reports whether req comes from elsewhere than leg l's side:
// another WebSocket than l's browser's, or a browser when l's peer is a
// SIP one.
func otherParty(l *leg, req *sip.Request) bool {
	ws := strings.HasPrefix(strings.ToUpper(req.Transport()), "WS")
	if l.kind == kindWebRTC {
		return !ws || l.d.flow != req.Source()
	}
	return ws
}

// replacingTarget is where an INVITE that replaces leg l's dialog goes:
// to the other party of l's call, on the same connection or target, with
// a Replaces naming that party's dialog with Strait; or, when r names
// l's dialog as l's peer sees it (r's from-tag is Strait's), to that
// peer with r as it is.
func (e *Engine) replacingTarget(l *leg, r replaces) (target, bool) {
	if l.d.localTag == r.fromTag {
		return legTarget(l, r), true
	}
	rep, o, ok := across(l, r.earlyOnly)
	if !ok {
		return target{}, false
	}
	return legTarget(o, rep), true
}

// legTarget is a target that reaches leg o's peer where o's dialog does,
// with an INVITE carrying Replaces rep.
func legTarget(o *leg, rep replaces) target {
	o.d.mu.Lock()
	contact, transport, flow, dest, up := *o.d.target.Clone(), o.d.transport, o.d.flow, o.d.dest, o.d.up
	user := o.d.remote.User
	o.d.mu.Unlock()
	if up != nil {
		attempts := []upstream.Target{*up}
		return target{upstream: true, user: user, attempts: attempts, replaces: rep.String()}
	}
	src := flow
	if src == "" {
		src = dest
	}
	b := registrar.Binding{AOR: user, Contact: contact, Transport: transport, Source: src}
	return target{binding: b, user: user, replaces: rep.String()}
}

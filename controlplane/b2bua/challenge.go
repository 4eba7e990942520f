package b2bua

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// The credentialed retry after 401/407 (RFC 3261 sections 8.1.3.5 and
// 22.2): a UAC that answers a challenge sends the request again with the
// same Call-ID and From tag and the next CSeq. Toward the upstream Strait
// is that UAC for the browser, whose challenge it passed through: when
// the browser's retry arrives (its own Call-ID and tag, with credentials),
// Strait continues the dialog it was challenged on, at the target that
// challenged it, instead of starting a new one: PBXs that tie the nonce
// to the dialog refuse a credential that arrives on another Call-ID.

// challengeMemory is how long a challenged dialog waits for its retry:
// 64*T1, the lifetime of the transaction that carried the challenge.
const challengeMemory = 64 * 500 * time.Millisecond

// maxChallenges bounds the dialogs remembered at once (each is a few
// hundred bytes; a flood of challenged INVITEs displaces the oldest).
const maxChallenges = 4096

// challenged is a dialog toward the upstream that got 401 or 407.
type challenged struct {
	callID, tag string
	cseq        uint32
	target      upstream.Target
	at          time.Time
}

// challenges remembers challenged dialogs by the caller's dialog
// identity. Safe for concurrent use.
type challenges struct {
	mu sync.Mutex // guards m
	m  map[string]challenged
}

// challengeKey identifies the caller's side of a challenged request: its
// Call-ID and From tag, and the flow it came on (nobody else may continue
// it).
func challengeKey(req *sip.Request) (string, bool) {
	if req.CallID() == nil || req.From() == nil {
		return "", false
	}
	tag, _ := req.From().Params.Get("tag")
	if tag == "" {
		return "", false
	}
	return req.CallID().Value() + "\x00" + tag + "\x00" + req.Source(), true
}

// remember records that dialog d, started for req, was challenged.
func (cs *challenges) remember(req *sip.Request, d *dialog) {
	k, ok := challengeKey(req)
	if !ok {
		return
	}
	d.mu.Lock()
	ch := challenged{callID: d.callID, tag: d.localTag, cseq: d.cseq, at: time.Now()}
	if d.up != nil {
		ch.target = *d.up
	}
	d.mu.Unlock()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[string]challenged{}
	}
	if len(cs.m) >= maxChallenges {
		cs.sweep(time.Now())
		for k := range cs.m { // still full: displace one
			if len(cs.m) < maxChallenges {
				break
			}
			delete(cs.m, k)
		}
	}
	cs.m[k] = ch
}

// take returns (and forgets) the challenged dialog a credentialed retry
// continues.
func (cs *challenges) take(req *sip.Request) (challenged, bool) {
	if sipnet.Header(req, "Authorization") == nil && sipnet.Header(req, "Proxy-Authorization") == nil {
		return challenged{}, false
	}
	k, ok := challengeKey(req)
	if !ok {
		return challenged{}, false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch, ok := cs.m[k]
	delete(cs.m, k)
	if !ok || time.Since(ch.at) > challengeMemory {
		return challenged{}, false
	}
	return ch, true
}

// sweep drops the expired entries. cs.mu held.
func (cs *challenges) sweep(now time.Time) {
	for k, ch := range cs.m {
		if now.Sub(ch.at) > challengeMemory {
			delete(cs.m, k)
		}
	}
}

// continueChallenged makes d, a new dialog toward the upstream, the one a
// challenge interrupted: its Call-ID, tag and CSeq (the next request
// takes the next), and the attempts start at the target that challenged
// it. Before the call is published.
func continueChallenged(d *dialog, ch challenged, tgt *target) {
	d.callID, d.localTag = ch.callID, ch.tag
	d.cseq = ch.cseq
	if ch.target.Spec == nil {
		return
	}
	for i, t := range tgt.attempts {
		if t.Key() == ch.target.Key() {
			tgt.attempts = append([]upstream.Target{t}, append(tgt.attempts[:i:i], tgt.attempts[i+1:]...)...)
			aimAt(d, t, tgt.user)
			return
		}
	}
}

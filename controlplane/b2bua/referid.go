package b2bua

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// A NOTIFY of the refer event package names its REFER by that REFER's
// CSeq number in the Event header's id parameter (RFC 3515 section
// 2.4.6). A relayed REFER has another CSeq on each side of Strait, so the
// NOTIFYs that come back must name the referrer's own REFER: a JsSIP
// referrer that finds no REFER of its own with that id answers 481 and
// never learns how the transfer went.

// maxReferIDs bounds the REFERs a dialog remembers (a transfer is one or
// two; the oldest is forgotten first).
const maxReferIDs = 8

// referID is one REFER Strait relayed on a dialog: its CSeq there and
// the CSeq of the REFER it relayed.
type referID struct{ sent, orig uint32 }

// relayedRefer records that Strait sent, on d, a REFER with CSeq sent
// relaying one whose CSeq was orig.
func (d *dialog) relayedRefer(sent, orig uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.referIDs) == maxReferIDs {
		d.referIDs = d.referIDs[1:]
	}
	d.referIDs = append(d.referIDs, referID{sent: sent, orig: orig})
}

// origReferID maps the CSeq of a REFER Strait sent on d to the one it
// relayed.
func (d *dialog) origReferID(sent uint32) (uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.referIDs {
		if r.sent == sent {
			return r.orig, true
		}
	}
	return 0, false
}

// translateReferEvent rewrites the Event header of a NOTIFY relayed from
// dialog from (fwd is the relayed copy): an id naming a REFER Strait sent
// on from is replaced with the relayed REFER's CSeq. Other events, and
// ids Strait does not know, go unchanged.
func translateReferEvent(from *dialog, fwd *sip.Request) {
	h := sipnet.Header(fwd, "Event")
	if h == nil {
		return
	}
	if v, ok := rewriteReferID(h.Value(), from.origReferID); ok {
		fwd.ReplaceHeader(sip.NewHeader("Event", v))
	}
}

// rewriteReferID rewrites the id parameter of a refer Event header value
// through lookup; false when there is nothing to rewrite.
func rewriteReferID(v string, lookup func(uint32) (uint32, bool)) (string, bool) {
	parts := strings.Split(v, ";")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), "refer") {
		return "", false
	}
	for i, p := range parts[1:] {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "id") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32)
		if err != nil {
			return "", false
		}
		orig, known := lookup(uint32(n))
		if !known {
			return "", false
		}
		parts[i+1] = "id=" + strconv.FormatUint(uint64(orig), 10)
		return strings.Join(parts, ";"), true
	}
	return "", false
}

package b2bua

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// Reliable provisional responses (RFC 3262), as the UAC toward PBXs and
// SIP devices: Strait's INVITE says Supported: 100rel; a 1xx that comes
// with Require: 100rel and an RSeq is acknowledged with PRACK (its own
// transaction, retransmitted by sipgo over UDP), and its retransmissions
// (the same RSeq, or older) are discarded before anything reaches the
// caller (section 4: once received, retransmissions MUST be discarded),
// so a browser sees one 183 however often the PBX resends it. Offers and
// answers in reliable provisionals are the early media Strait already
// relays: its INVITE always has an offer, so the 1xx carries the answer
// and the PRACK none.

// hasOption reports whether a message lists an option tag in the named
// headers (Supported, Require and their compact forms).
func hasOption(m headers, tag string, names ...string) bool {
	for _, n := range names {
		for h := range sipnet.HeadersNamed(m, n) {
			for t := range strings.SplitSeq(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), tag) {
					return true
				}
			}
		}
	}
	return false
}

// reliableRSeq returns the RSeq of a reliable provisional response (RFC
// 3262 section 7.1), ok false for an unreliable one.
func reliableRSeq(res *sip.Response) (uint32, bool) {
	if res.StatusCode <= 100 || res.StatusCode >= 200 || !hasOption(res, "100rel", "Require") {
		return 0, false
	}
	h := sipnet.Header(res, "RSeq")
	if h == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// reliableTracker remembers, per early dialog (the 1xx's To tag), the
// last RSeq acknowledged. Owned by the call's loop.
type reliableTracker map[string]uint32

// fresh reports whether a reliable provisional is new (RSeq above the
// last of its early dialog) and records it.
func (r reliableTracker) fresh(res *sip.Response, rseq uint32) bool {
	tag, _ := res.To().Params.Get("tag")
	if last, ok := r[tag]; ok && rseq <= last {
		return false
	}
	r[tag] = rseq
	return true
}

// prack acknowledges a reliable provisional on dialog d (its early
// dialog, established from the response): PRACK with RAck (RFC 3262
// section 7.2). It is sent from its own goroutine and never blocks the
// call's loop; a PRACK that fails is logged (the PBX then gives up on
// the call, which ends the INVITE).
func (c *Call) prack(d *dialog, res *sip.Response, rseq uint32) {
	req := d.request(sip.PRACK, nil, "")
	cs := res.CSeq()
	req.AppendHeader(sip.NewHeader("RAck", strconv.FormatUint(uint64(rseq), 10)+" "+strconv.FormatUint(uint64(cs.SeqNo), 10)+" "+string(cs.MethodName)))
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
		defer cancel()
		r, err := c.e.st.Do(ctx, req)
		if err != nil || r.StatusCode >= 300 {
			code := 0
			if r != nil {
				code = r.StatusCode
			}
			c.log.Info("PRACK not accepted", "rseq", rseq, "status", code, "err", err)
		}
	}()
}

// As the UAS toward a SIP caller whose INVITE requires 100rel (RFC 3262
// section 3), Strait sends its provisionals reliably: each with Require:
// 100rel and the next RSeq, retransmitted at T1, 2*T1, ... until the
// caller's PRACK matches it (RAck), at most 64*T1; the next provisional
// waits for that PRACK (only the latest waiting one is kept), and a 2xx
// waits for the PRACK of a provisional that carried SDP. A PRACK that
// matches nothing gets 481. Callers that only support 100rel get
// provisionals unreliably, as RFC 3262 allows.

// reliableUAS is a caller's reliable provisionals. Its fields are
// guarded by mu: the call's loop sends, a PRACK's handler goroutine
// acknowledges.
type reliableUAS struct {
	tx   sip.ServerTransaction // the INVITE's (frozen)
	cseq uint32                // the INVITE's CSeq number (frozen)

	mu      sync.Mutex
	rseq    uint32        // the last RSeq sent
	pending *sip.Response // sent and not acknowledged yet
	sdp     bool          // pending carried SDP
	acked   chan struct{} // closed when pending is acknowledged
	queued  *sip.Response // the next provisional, waiting for pending's PRACK
}

// requires100rel reports whether a request requires reliable
// provisionals.
func requires100rel(req *sip.Request) bool { return hasOption(req, "100rel", "Require") }

// unsupportedRequire returns the option tags a request requires that
// Strait does not support (RFC 3261 section 8.2.2.3: 420 Bad Extension).
func unsupportedRequire(req *sip.Request) []string {
	var out []string
	for _, n := range []string{"Require"} {
		for h := range sipnet.HeadersNamed(req, n) {
			for t := range strings.SplitSeq(h.Value(), ",") {
				t = strings.ToLower(strings.TrimSpace(t))
				switch t {
				case "", "100rel", "timer":
				default:
					out = append(out, t)
				}
			}
		}
	}
	return out
}

// newReliableUAS starts the reliable provisionals of an INVITE; RSeq
// starts at random (RFC 3262 section 3: between 1 and 2**31 - 1).
func newReliableUAS(tx sip.ServerTransaction, invite *sip.Request) *reliableUAS {
	return &reliableUAS{tx: tx, cseq: invite.CSeq().SeqNo, rseq: uint32(rand.Int32N(1<<30)) + 1}
}

// send sends res reliably on tx (or queues it behind an unacknowledged
// one) and retransmits it until PRACK, from a goroutine of its own that
// ends with the acknowledgement, 64*T1 or done.
func (r *reliableUAS) send(c *Call, res *sip.Response) {
	r.mu.Lock()
	if r.pending != nil {
		r.queued = res
		r.mu.Unlock()
		return
	}
	r.start(c, res)
	r.mu.Unlock()
}

// start sends res as the next reliable provisional. r.mu held.
func (r *reliableUAS) start(c *Call, res *sip.Response) {
	tx := r.tx
	r.rseq++
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(r.rseq), 10)))
	r.pending, r.sdp, r.acked = res, len(res.Body()) > 0, make(chan struct{})
	c.e.st.RespondWith(tx, res)
	acked := r.acked
	go func() {
		interval := sipnet.T1
		resend := time.NewTimer(interval)
		defer resend.Stop()
		giveUp := time.NewTimer(64 * sipnet.T1)
		defer giveUp.Stop()
		for {
			select {
			case <-acked:
				return
			case <-c.done:
				return
			case <-giveUp.C:
				c.log.Info("reliable provisional never acknowledged (no PRACK)")
				c.stop(504, "no prack", nil)
				return
			case <-resend.C:
				tx.Respond(res)
				interval = min(2*interval, 4*time.Second)
				resend.Reset(interval)
			}
		}
	}()
}

// prack takes a PRACK for this INVITE: true when its RAck acknowledges
// the pending provisional, which then stops being retransmitted (and the
// queued one goes out).
func (r *reliableUAS) prack(c *Call, req *sip.Request) bool {
	h := sipnet.Header(req, "RAck")
	if h == nil {
		return false
	}
	f := strings.Fields(h.Value())
	if len(f) != 3 || !strings.EqualFold(f[2], "INVITE") {
		return false
	}
	rseq, err1 := strconv.ParseUint(f[0], 10, 32)
	cseq, err2 := strconv.ParseUint(f[1], 10, 32)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err1 != nil || err2 != nil || r.pending == nil || uint32(rseq) != r.rseq || uint32(cseq) != r.cseq {
		return false
	}
	close(r.acked)
	r.pending = nil
	if q := r.queued; q != nil {
		r.queued = nil
		r.start(c, q)
	}
	return true
}

// waitSDPAcked waits until no provisional with SDP awaits its PRACK (a
// 2xx may not overtake it, RFC 3262 section 3); false when the call
// stopped or 64*T1 passed.
func (r *reliableUAS) waitSDPAcked(c *Call) bool {
	r.mu.Lock()
	pending, sdp, acked := r.pending != nil, r.sdp, r.acked
	r.mu.Unlock()
	if !pending || !sdp {
		return true
	}
	t := time.NewTimer(64 * sipnet.T1)
	defer t.Stop()
	select {
	case <-acked:
		return true
	case <-c.stopping:
	case <-t.C:
	}
	return false
}

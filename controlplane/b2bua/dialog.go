package b2bua

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// dialog is one SIP dialog Strait is an end of (RFC 3261 section 12): the
// identifiers, the remote target and route set, and both CSeq spaces. A
// call has two; nothing of one is ever copied into the other, which is
// what hides each side's topology from the other.
//
// The first block is set when the dialog is made and never written again
// (a call publishes its dialogs complete). mu guards the rest, which the
// call's loop and the goroutines relaying in-dialog requests both use; it
// is held only while those fields are read or written, never across I/O.
// Of those, local, remote, transport, dest and up change only when the
// call's loop aims a dialog it starts at another upstream target (aimAt,
// before the dialog is confirmed), so the loop itself may read them
// without mu.
type dialog struct {
	st        *sipnet.Stack
	callID    string
	localTag  string
	localName string
	flow      string // WebSocket: the connection the peer is on
	uas       bool
	invite    *sip.Request // the INVITE (or SUBSCRIBE) that made the dialog
	inviteTx  sip.ServerTransaction
	contact   string // our Contact user part

	mu        sync.Mutex // guards the fields below
	local     sip.Uri    // our URI in From (UAC) / To (UAS)
	remote    sip.Uri    // the peer's
	transport string
	dest      string           // where requests go without a route set: a SIP device's registration source, an upstream target
	up        *upstream.Target // the upstream target the dialog is with, if any
	remoteTag string
	target    sip.Uri   // remote target (the peer's Contact)
	routes    []string  // route set, in the order Route headers take
	cseq      uint32    // our last CSeq
	rcseq     uint32    // the peer's last CSeq
	fixed     bool      // the route set is fixed: a UAS dialog's from the start, a UAC dialog's from its 2xx
	referIDs  []referID // REFERs Strait relayed on this dialog (referid.go)
	// reflow, for a dialog with a browser, finds the flow requests go to
	// when the dialog's own is gone (see Engine.reflow); set when the
	// dialog is added to the engine.
	reflow func(target sip.Uri, flow, callID string) string
}

// key identifies a dialog among Strait's: its Call-ID and our tag.
func key(callID, localTag string) string { return callID + "\x00" + localTag }

func (d *dialog) key() string { return key(d.callID, d.localTag) }

// newUAS makes the dialog of a request Strait answers (INVITE, SUBSCRIBE).
func newUAS(st *sipnet.Stack, req *sip.Request, tx sip.ServerTransaction) *dialog {
	d := &dialog{st: st, uas: true, fixed: true, invite: req, inviteTx: tx, localTag: sip.GenerateTagN(16),
		transport: strings.ToUpper(req.Transport()), contact: "strait"}
	d.callID = req.CallID().Value()
	if f := req.From(); f != nil {
		d.remote = *f.Address.Clone()
		d.remoteTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		d.local = *t.Address.Clone()
	}
	if c := req.Contact(); c != nil {
		d.target = *c.Address.Clone()
	} else {
		d.target = *d.remote.Clone()
	}
	// RFC 3261 section 12.1.1: the UAS's route set is the request's
	// Record-Route, in order.
	d.routes = routeEntries(slices.Collect(sipnet.HeadersNamed(req, "Record-Route")))
	if sipnet.IsWebSocket(d.transport) {
		d.flow = req.Source()
	}
	d.rcseq = req.CSeq().SeqNo
	return d
}

// newUAC makes a dialog Strait starts: a fresh Call-ID and tag, nothing
// taken from the other leg.
func newUAC(st *sipnet.Stack, target, local, remote sip.Uri, localName, transport, flow string) *dialog {
	return &dialog{st: st, callID: sip.GenerateTagN(24), localTag: sip.GenerateTagN(16),
		local: local, remote: remote, localName: localName, target: target,
		transport: strings.ToUpper(transport), flow: flow, cseq: uint32(rand.IntN(1 << 15)), contact: "strait"}
}

// route returns where the dialog's requests go: the flow for a browser,
// else the first route or the remote target. d.mu held.
func (d *dialog) route() sipnet.Route {
	if d.flow != "" {
		return sipnet.Route{Transport: d.transport, Dest: d.flow}
	}
	if len(d.routes) > 0 {
		if u, err := routeURI(d.routes[0]); err == nil {
			return sipnet.Route{Transport: d.transport, Dest: hostPort(u, d.transport)}
		}
	}
	if d.dest != "" {
		return sipnet.Route{Transport: d.transport, Dest: d.dest}
	}
	return sipnet.Route{Transport: d.transport, Dest: hostPort(d.target, d.transport)}
}

// routeEntries splits Record-Route (or Route) header values into their
// entries, in order: one header line may carry several, comma-separated
// (RFC 3261 section 7.3.1).
func routeEntries(hs []sip.Header) []string {
	var out []string
	for _, h := range hs {
		v := h.Value()
		start, inURI, inQuote := 0, false, false
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"' && !inURI:
				inQuote = !inQuote
			case c == '<' && !inQuote:
				inURI = true
			case c == '>' && !inQuote:
				inURI = false
			case c == ',' && !inURI && !inQuote:
				if e := strings.TrimSpace(v[start:i]); e != "" {
					out = append(out, e)
				}
				start = i + 1
			}
		}
		if e := strings.TrimSpace(v[start:]); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// routeURI parses the URI of one route entry (name-addr or addr-spec).
func routeURI(entry string) (sip.Uri, error) {
	var u sip.Uri
	v := strings.TrimSpace(entry)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	err := sip.ParseUri(v, &u)
	return u, err
}

// looseRoute reports whether a route entry's URI has the lr parameter.
func looseRoute(entry string) bool {
	u, err := routeURI(entry)
	if err != nil || u.UriParams == nil {
		return false
	}
	return u.UriParams.Has("lr")
}

// hostPort is a URI's host and port, the transport's default port if none.
func hostPort(u sip.Uri, transport string) string {
	p := u.Port
	if p == 0 {
		p = 5060
		if strings.EqualFold(transport, sipnet.TLS) {
			p = 5061
		}
	}
	host := u.Host
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		host = a.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

func (d *dialog) fromTo() (*sip.FromHeader, *sip.ToHeader) {
	from := &sip.FromHeader{DisplayName: d.localName, Address: *d.local.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{Address: *d.remote.Clone(), Params: sip.NewParams()}
	if d.remoteTag != "" {
		to.Params.Add("tag", d.remoteTag)
	}
	return from, to
}

// request builds an in-dialog request (or the dialog's first request when
// Strait is the UAC) with the next CSeq, ready to send.
func (d *dialog) request(method sip.RequestMethod, body []byte, contentType string) *sip.Request {
	d.refreshFlow()
	d.mu.Lock()
	defer d.mu.Unlock()
	ruri, routes := *d.target.Clone(), d.routes
	if len(routes) > 0 && d.flow == "" && !looseRoute(routes[0]) {
		// A strict router (RFC 3261 section 12.2.1.1): the first route
		// becomes the Request-URI, the remote target the last route.
		if u, err := routeURI(routes[0]); err == nil {
			u.UriParams, u.Headers = sip.NewParams(), sip.NewParams()
			routes = append(append([]string(nil), routes[1:]...), "<"+d.target.String()+">")
			ruri = u
		}
	}
	req := sip.NewRequest(method, ruri)
	from, to := d.fromTo()
	req.AppendHeader(from)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	if method != sip.ACK && method != sip.CANCEL {
		d.cseq++
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq, MethodName: method})
	for _, r := range routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	if method == sip.INVITE || method == sip.UPDATE || method == sip.SUBSCRIBE || method == sip.REFER || method == sip.NOTIFY {
		req.AppendHeader(d.st.Contact(d.transport, d.contact))
	}
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
		req.SetBody(body)
	}
	d.st.Prepare(req, d.route())
	return req
}

// flowNow is the browser flow the dialog uses now ("" for none), read
// under d.mu: its loop may change it (refreshFlow).
func (d *dialog) flowNow() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flow
}

// refreshFlow points a browser's dialog at the flow of its newest
// registration when its own flow is gone (the browser reconnected). The
// lookup runs without d.mu (no lock nests).
func (d *dialog) refreshFlow() {
	d.mu.Lock()
	reflow, flow, target, callID := d.reflow, d.flow, d.target, d.callID
	d.mu.Unlock()
	if reflow == nil || flow == "" {
		return
	}
	if nf := reflow(target, flow, callID); nf != "" && nf != flow {
		d.mu.Lock()
		if d.flow == flow {
			d.flow = nf
		}
		d.mu.Unlock()
	}
}

// ack builds the ACK for a 2xx to the dialog's INVITE with CSeq number seq.
func (d *dialog) ack(seq uint32, body []byte) *sip.Request {
	req := d.request(sip.ACK, body, "application/sdp")
	req.CSeq().SeqNo = seq
	return req
}

// cancel builds the CANCEL for an INVITE Strait sent (RFC 3261 section
// 9.1: same R-URI, Call-ID, From, To, CSeq number and top Via).
func cancelFor(st *sipnet.Stack, inv *sip.Request) *sip.Request {
	req := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	req.AppendHeader(sip.HeaderClone(inv.Via()))
	for _, name := range []string{"From", "To", "Call-ID", "Max-Forwards", "Route"} {
		for h := range sipnet.HeadersNamed(inv, name) {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	req.SetBody(nil)
	return req
}

// established records the peer's tag, target and route set from a
// response to the dialog's first request (1xx with a tag, or 2xx). Once
// the route set is fixed (a UAS dialog, or a UAC dialog after its 2xx) a
// 2xx, to a re-INVITE, only refreshes the target: the route set never
// changes (RFC 3261 section 12.2.1.2), even when the proxies did not
// record-route the re-INVITE.
func (d *dialog) established(res *sip.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fixed {
		if c := res.Contact(); c != nil && d.flow == "" && res.IsSuccess() {
			d.target = *c.Address.Clone()
		}
		return
	}
	if res.IsSuccess() {
		d.fixed = true
	}
	if t := res.To(); t != nil {
		if tag, ok := t.Params.Get("tag"); ok {
			d.remoteTag = tag
		}
	}
	if c := res.Contact(); c != nil && d.flow == "" {
		d.target = *c.Address.Clone()
	}
	// RFC 3261 section 12.1.2: the UAC's route set is the response's
	// Record-Route in reverse order.
	rr := routeEntries(slices.Collect(sipnet.HeadersNamed(res, "Record-Route")))
	routes := make([]string, 0, len(rr))
	for i := len(rr) - 1; i >= 0; i-- {
		routes = append(routes, rr[i])
	}
	d.routes = routes
}

// checkCSeq validates an in-dialog request's CSeq (RFC 3261 section
// 12.2.2: lower than the last one is an error) and records it.
func (d *dialog) checkCSeq(req *sip.Request) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := req.CSeq().SeqNo
	if d.rcseq != 0 && n < d.rcseq {
		return false
	}
	d.rcseq = n
	if c := req.Contact(); c != nil && d.flow == "" && req.Method == sip.INVITE {
		d.target = *c.Address.Clone() // a target refresh (section 12.2.2)
	}
	return true
}

// response builds Strait's response to the dialog's INVITE (UAS) with our
// tag and Contact.
func (d *dialog) response(code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	res := d.st.Response(d.invite, code, reason, body, hdrs...)
	if code > 100 {
		res.To().Params.Add("tag", d.localTag)
	}
	if code > 100 && code < 300 {
		res.AppendHeader(d.st.Contact(d.transport, d.contact))
	}
	if len(body) > 0 {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	return res
}

// send sends a built request and waits for its final response.
func (d *dialog) send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return d.st.Do(ctx, req)
}

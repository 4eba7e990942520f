package siptest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Dialog is one call of a Phone, placed (Invite) or received (Incoming).
type Dialog struct {
	p *Phone
	// CallID is the dialog's Call-ID; Invite the INVITE sent or received.
	CallID string
	Invite *sip.Request
	// Provisional delivers the provisional responses of a placed call.
	Provisional chan *sip.Response
	// Final is the final response of a placed call once WaitAnswer
	// returned.
	Final *sip.Response
	// Reinvites delivers the in-dialog INVITEs the phone received (after
	// answering them with OnReinvite); Acks the ACKs of those answers.
	Reinvites chan *sip.Request
	Acks      chan *sip.Request

	mu         sync.Mutex // guards onReinvite, localSDP and cancelReq
	onReinvite func(offer []byte) (int, []byte)
	localSDP   []byte
	cancelReq  *sip.Request

	out *sipgo.DialogClientSession
	in  *sipgo.DialogServerSession

	ended     chan struct{}
	endOnce   sync.Once
	responded chan struct{}
	respOnce  sync.Once
	cancelled chan struct{}
	ackBody   []byte // guarded by p.mu
	dest      string // guarded by mu: where in-dialog requests go ("": the remote target)
}

// SendTo sends the dialog's requests from now on to addr instead of the
// remote target's address: what a load balancer in front of several
// Strait control planes does with the shared address in Strait's Contact
// (tests aim them at the control plane that took the call over).
func (d *Dialog) SendTo(addr string) {
	d.mu.Lock()
	d.dest = addr
	d.mu.Unlock()
}

// aim sets req's destination when SendTo gave one.
func (d *Dialog) aim(req *sip.Request) {
	d.mu.Lock()
	dest := d.dest
	d.mu.Unlock()
	if dest != "" {
		req.SetDestination(dest)
	}
}

// allowed is what JsSIP lists in Allow.
const allowed = "INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY,SUBSCRIBE"

func newDialog(p *Phone, req *sip.Request) *Dialog {
	return &Dialog{p: p, CallID: req.CallID().Value(), Invite: req, Provisional: make(chan *sip.Response, 16),
		Reinvites: make(chan *sip.Request, 16), Acks: make(chan *sip.Request, 16), ended: make(chan struct{}), responded: make(chan struct{}),
		cancelled: make(chan struct{})}
}

// OnReinvite sets how re-INVITE offers are answered (by default 200 with
// the dialog's current description).
func (d *Dialog) OnReinvite(f func(offer []byte) (int, []byte)) {
	d.mu.Lock()
	d.onReinvite = f
	d.mu.Unlock()
}

func (d *Dialog) setLocal(b []byte) {
	d.mu.Lock()
	d.localSDP = b
	d.mu.Unlock()
}

func (d *Dialog) end() { d.endOnce.Do(func() { close(d.ended) }) }

// Ended is closed when the dialog ended (BYE sent or received).
func (d *Dialog) Ended() <-chan struct{} { return d.ended }

// Cancelled is closed when the caller cancelled an incoming call.
func (d *Dialog) Cancelled() <-chan struct{} { return d.cancelled }

// CancelRequest returns the CANCEL that ended a received call, nil when
// none came.
func (d *Dialog) CancelRequest() *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancelReq
}

// WaitEnded waits for the dialog to end.
func (d *Dialog) WaitEnded(timeout time.Duration) error {
	select {
	case <-d.ended:
		return nil
	case <-time.After(timeout):
		return errors.New("siptest: dialog did not end")
	}
}

// Invite places a call to user with an SDP offer (nil for a delayed
// offer) and returns at once; WaitAnswer waits for the outcome.
func (p *Phone) Invite(ctx context.Context, user string, offer []byte, hdrs ...sip.Header) (*Dialog, error) {
	dua := &sipgo.DialogUA{Client: p.Client, ContactHDR: p.Contact, RewriteContact: p.Transport == "WS" || p.Transport == "WSS"}
	to := p.URI(user)
	req := sip.NewRequest(sip.INVITE, to)
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	from := &sip.FromHeader{DisplayName: p.user, Address: p.URI(p.user), Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	req.AppendHeader(from)
	cid := sip.CallIDHeader(randHex(10))
	req.AppendHeader(&cid)
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.AppendHeader(sip.NewHeader("Supported", "ice,replaces,outbound,timer"))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(offer) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(offer)
	}
	p.route(req)
	d := newDialog(p, req)
	d.setLocal(offer)
	p.addDialog(d)
	sess, err := dua.WriteInvite(ctx, req)
	if err != nil {
		return nil, err
	}
	d.out = sess
	return d, nil
}

// WaitAnswer waits for the final response of a placed call, answering a
// 401/407 with the password when given. A failure returns the final
// response with an error. Cancelling ctx sends CANCEL.
func (d *Dialog) WaitAnswer(ctx context.Context, password string) (*sip.Response, error) {
	err := d.out.WaitAnswer(ctx, sipgo.AnswerOptions{Username: d.p.user, Password: password,
		OnResponse: func(r *sip.Response) error {
			if r.IsProvisional() {
				select {
				case d.Provisional <- r:
				default:
				}
			}
			return nil
		}})
	d.Final = d.out.InviteResponse
	return d.Final, err
}

// Cancel cancels a placed call that has had a provisional response
// (RFC 3261 section 9.1): a CANCEL with the INVITE's Request-URI, Via
// (same branch), Route, Call-ID, From, To and CSeq number, sent where the
// INVITE went. It returns the CANCEL's own response; WaitAnswer then gets
// the INVITE's 487. (sipgo's CANCEL, sent when WaitAnswer's context ends,
// keeps no destination and goes to the Request-URI's host and default
// port, which misses a peer the phone reaches on another port.)
func (d *Dialog) Cancel(ctx context.Context) (*sip.Response, error) {
	inv := d.out.InviteRequest
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.SipVersion = inv.SipVersion
	if v := inv.Via(); v != nil {
		c.AppendHeader(v.Clone())
	}
	sip.CopyHeaders("Route", inv, c)
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, name := range []string{"From", "To", "Call-ID"} {
		if h := inv.GetHeader(name); h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	cseq := inv.CSeq()
	c.AppendHeader(&sip.CSeqHeader{SeqNo: cseq.SeqNo, MethodName: sip.CANCEL})
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	return d.p.Client.Do(ctx, c)
}

// Ack confirms a 2xx.
func (d *Dialog) Ack(ctx context.Context) error { return d.out.Ack(ctx) }

// AckSDP confirms a 2xx that carried an offer (the INVITE had none) with
// the answer in the ACK.
func (d *Dialog) AckSDP(ctx context.Context, answer []byte) error {
	ack := sip.NewRequest(sip.ACK, d.remoteTarget())
	ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ack.SetBody(answer)
	return d.out.WriteAck(ctx, ack)
}

// Hangup sends BYE.
func (d *Dialog) Hangup(ctx context.Context) error {
	d.settled()
	defer d.end()
	d.mu.Lock()
	redirected := d.dest != ""
	d.mu.Unlock()
	if redirected {
		res, err := d.Request(ctx, sip.BYE, nil, "")
		if err == nil && !res.IsSuccess() {
			err = fmt.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
		}
		return err
	}
	if d.out != nil {
		return d.out.Bye(ctx)
	}
	return d.in.Bye(ctx)
}

// settled waits until an incoming call's Answer (or Reject) returned, so
// that requests in the dialog see its final response (tests often answer
// in a goroutine).
func (d *Dialog) settled() {
	if d.in == nil {
		return
	}
	select {
	case <-d.responded:
	case <-time.After(10 * time.Second):
	}
}

func (d *Dialog) remoteTarget() sip.Uri {
	if d.out != nil {
		if c := d.out.InviteResponse.Contact(); c != nil {
			return *c.Address.Clone()
		}
		return *d.Invite.Recipient.Clone()
	}
	return *d.Invite.Contact().Address.Clone()
}

// Request sends an in-dialog request (INFO, MESSAGE, REFER, UPDATE,
// INVITE for a re-INVITE...) and returns its final response; a 2xx to a
// re-INVITE is ACKed.
func (d *Dialog) Request(ctx context.Context, method sip.RequestMethod, body []byte, contentType string, hdrs ...sip.Header) (*sip.Response, error) {
	d.settled()
	req := sip.NewRequest(method, d.remoteTarget())
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
		req.SetBody(body)
	}
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(d.p.Contact.Clone())
	}
	d.aim(req)
	var res *sip.Response
	var err error
	if d.out != nil {
		d.mu.Lock()
		dest := d.dest
		d.mu.Unlock()
		if dest != "" && d.out.InviteResponse != nil && (d.p.Transport == "WS" || d.p.Transport == "WSS") {
			// sipgo aims a WebSocket client's requests at where its 2xx
			// came from: a browser that reconnected elsewhere sends on
			// its new connection.
			d.out.InviteResponse.SetSource(dest)
		}
		res, err = d.out.Do(ctx, req)
	} else {
		d.mu.Lock()
		dest := d.dest
		d.mu.Unlock()
		if dest != "" && (d.p.Transport == "WS" || d.p.Transport == "WSS") {
			// sipgo aims a WebSocket server's requests at where the
			// INVITE came from: a browser that reconnected elsewhere
			// sends on its new connection.
			d.in.InviteRequest.SetSource(dest)
		}
		res, err = d.in.Do(ctx, req)
	}
	if err != nil || method != sip.INVITE || !res.IsSuccess() {
		return res, err
	}
	ack := sip.NewRequest(sip.ACK, d.remoteTarget())
	d.aim(ack)
	if d.out != nil {
		err = d.out.WriteRequest(ack)
	} else {
		err = d.in.WriteRequest(ack)
	}
	return res, err
}

// ReinviteForOffer sends a re-INVITE without SDP (asking for an offer),
// answers the offer of a 2xx with answer in the ACK, and returns the
// final response.
func (d *Dialog) ReinviteForOffer(ctx context.Context, answer func(offer []byte) []byte) (*sip.Response, error) {
	d.settled()
	req := sip.NewRequest(sip.INVITE, d.remoteTarget())
	req.AppendHeader(d.p.Contact.Clone())
	var res *sip.Response
	var err error
	if d.out != nil {
		res, err = d.out.Do(ctx, req)
	} else {
		d.mu.Lock()
		dest := d.dest
		d.mu.Unlock()
		if dest != "" && (d.p.Transport == "WS" || d.p.Transport == "WSS") {
			// sipgo aims a WebSocket server's requests at where the
			// INVITE came from: a browser that reconnected elsewhere
			// sends on its new connection.
			d.in.InviteRequest.SetSource(dest)
		}
		res, err = d.in.Do(ctx, req)
	}
	if err != nil || !res.IsSuccess() {
		return res, err
	}
	body := answer(res.Body())
	ack := sip.NewRequest(sip.ACK, d.remoteTarget())
	ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ack.SetBody(body)
	if d.out != nil {
		err = d.out.WriteRequest(ack)
	} else {
		err = d.in.WriteRequest(ack)
	}
	d.setLocal(body)
	return res, err
}

// Reinvite sends a re-INVITE with a new offer, ACKs a 2xx, and returns the
// final response.
func (d *Dialog) Reinvite(ctx context.Context, offer []byte) (*sip.Response, error) {
	res, err := d.Request(ctx, sip.INVITE, offer, "application/sdp")
	if err == nil && res.IsSuccess() {
		d.setLocal(offer)
	}
	return res, err
}

func (d *Dialog) done() { d.respOnce.Do(func() { close(d.responded) }) }

// Ring sends 180 for an incoming call.
func (d *Dialog) Ring() error { return d.in.Respond(180, "Ringing", nil) }

// Progress sends 183 with early media SDP.
func (d *Dialog) Progress(answer []byte) error {
	return d.in.Respond(183, "Session Progress", answer, sip.NewHeader("Content-Type", "application/sdp"))
}

// Answer answers an incoming call with SDP (an answer, or an offer when
// the INVITE had none) and waits for the ACK; it returns the ACK.
func (d *Dialog) Answer(sdp []byte) error { return d.AnswerWith(sdp) }

// AnswerWith is Answer with more headers (a Session-Expires).
func (d *Dialog) AnswerWith(sdp []byte, hdrs ...sip.Header) error {
	defer d.done()
	d.setLocal(sdp)
	hdrs = append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp"), sip.NewHeader("Allow", allowed)}, hdrs...)
	return d.in.Respond(200, "OK", sdp, hdrs...)
}

// Reject answers an incoming call with a failure.
func (d *Dialog) Reject(code int, reason string) error { return d.RejectWith(code, reason) }

// Provide sends a provisional response with a body and headers (a
// reliable 183, RFC 3262: Require: 100rel and RSeq); call it again to
// retransmit.
func (d *Dialog) Provide(code int, reason string, body []byte, hdrs ...sip.Header) error {
	if len(body) > 0 {
		hdrs = append(hdrs, sip.NewHeader("Content-Type", "application/sdp"))
	}
	return d.in.Respond(code, reason, body, hdrs...)
}

// RejectWith is Reject with headers (a challenge, a Contact for 3xx).
func (d *Dialog) RejectWith(code int, reason string, hdrs ...sip.Header) error {
	defer d.done()
	defer d.end()
	return d.in.Respond(code, reason, nil, hdrs...)
}

// AckBody is the body of the ACK an incoming call's answer got (the
// answer to a delayed offer).
func (d *Dialog) AckBody() []byte {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	return d.ackBody
}

func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		d := p.dialog(req.CallID().Value())
		if d == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		d.mu.Lock()
		code, body, f := 200, d.localSDP, d.onReinvite
		d.mu.Unlock()
		if f != nil {
			code, body = f(req.Body())
		}
		res := sip.NewResponseFromRequest(req, code, "", body)
		if len(body) > 0 {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		res.AppendHeader(p.Contact.Clone())
		tx.Respond(res)
		select {
		case d.Reinvites <- req:
		default:
		}
		return
	}
	dua := &sipgo.DialogUA{Client: p.Client, ContactHDR: p.Contact, RewriteContact: p.Transport == "WS" || p.Transport == "WSS"}
	sess, err := dua.ReadInvite(req, tx)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	d := newDialog(p, req)
	d.in = sess
	var once sync.Once
	cancelled := func() {
		once.Do(func() {
			select {
			case <-d.responded:
			default:
				close(d.cancelled)
				d.end()
			}
		})
	}
	tx.OnCancel(func(r *sip.Request) {
		d.mu.Lock()
		d.cancelReq = r
		d.mu.Unlock()
		cancelled()
	})
	p.addDialog(d)
	p.Incoming <- d
	select {
	case <-d.responded:
	case <-d.cancelled:
	case <-tx.Done():
		cancelled()
	case <-time.After(2 * time.Minute):
	}
}

func (p *Phone) onAck(req *sip.Request, tx sip.ServerTransaction) {
	d := p.dialog(req.CallID().Value())
	if d == nil {
		return
	}
	select {
	case d.Acks <- req:
	default:
	}
	if d.in == nil {
		return
	}
	p.mu.Lock()
	if len(req.Body()) > 0 {
		d.ackBody = req.Body()
	}
	p.mu.Unlock()
	d.in.ReadAck(req, tx)
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	d := p.dialog(req.CallID().Value())
	if d == nil {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if d.out != nil {
		d.out.ReadBye(req, tx)
	} else {
		d.in.ReadBye(req, tx)
	}
	d.end()
}

// Tags returns the dialog's local and remote tags (after its final
// response).
func (d *Dialog) Tags() (local, remote string) {
	switch {
	case d.out != nil && d.out.InviteResponse != nil:
		local, _ = d.out.InviteRequest.From().Params.Get("tag")
		remote, _ = d.out.InviteResponse.To().Params.Get("tag")
	case d.in != nil && d.in.InviteResponse != nil:
		local, _ = d.in.InviteResponse.To().Params.Get("tag")
		remote, _ = d.in.InviteRequest.From().Params.Get("tag")
	}
	return local, remote
}

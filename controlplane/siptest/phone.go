// Package siptest has real SIP peers for tests and test programs: a
// [Phone] that plays a browser's signalling over SIP over WebSocket (as
// JsSIP does it: a .invalid Contact with transport=ws, ob, reg-id and
// +sip.instance), or a PBX or SIP phone over UDP, with a small digest
// registrar for playing the PBX. Media comes from dataplane/mediatest;
// this package only speaks SIP. Nothing here is a mock: Phones are sipgo
// user agents on loopback.
package siptest

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// Phone is a SIP user agent: it registers, calls, answers and passes
// in-dialog requests, recording everything it receives.
type Phone struct {
	// UA, Client and Server are the phone's sipgo user agent.
	UA     *sipgo.UserAgent
	Client *sipgo.Client
	Server *sipgo.Server
	// Transport is "WS", "WSS", "UDP", "TCP" or "TLS".
	Transport string
	// peer is where out-of-dialog requests go: Strait's HTTP address for
	// WS (the path is /ws), its SIP address for UDP (see SetPeer).
	peer string
	// Addr is the phone's own UDP or TCP address (not for WS).
	Addr string
	// Contact is the phone's Contact.
	Contact sip.ContactHeader
	// Domain is the host of the phone's own AOR (From/To).
	Domain string

	// Incoming delivers new calls; Requests every out-of-dialog request
	// and every in-dialog one other than INVITE, ACK and BYE (MESSAGE,
	// INFO, NOTIFY, REFER, SUBSCRIBE...), in the order they came, as the
	// phone answers them.
	Incoming chan *Dialog
	Requests chan *sip.Request

	// Registrar, when set, answers REGISTER (see ServeRegistrar).
	registrar *Registrar

	mu       sync.Mutex
	dialogs  map[string]*Dialog // by Call-ID
	subTags  map[string]string  // SUBSCRIBE Call-ID -> the tag of our 2xx
	conn     net.PacketConn
	listener net.Listener
	user     string
	// SubscribeExpires is the Expires of the phone's 2xx to SUBSCRIBE (0:
	// 600). Set it before requests arrive.
	SubscribeExpires int
	// Reply decides the answer to out-of-dialog MESSAGE, NOTIFY,
	// SUBSCRIBE, PUBLISH and OPTIONS and in-dialog INFO, MESSAGE, NOTIFY, REFER;
	// nil answers 200 (202 for REFER).
	Reply func(req *sip.Request) int
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// NewBrowser returns a phone that speaks SIP over WebSocket to Strait's
// HTTP address (host:port), as JsSIP does.
func NewBrowser(httpAddr, user string) (*Phone, error) { return newBrowser(httpAddr, user, nil) }

// NewSecureBrowser is NewBrowser over WSS, trusting roots for Strait's
// certificate.
func NewSecureBrowser(httpAddr, user string, roots *x509.CertPool) (*Phone, error) {
	return newBrowser(httpAddr, user, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
}

func newBrowser(httpAddr, user string, tc *tls.Config) (*Phone, error) {
	host := randHex(6) + ".invalid"
	transports := sip.TransportsConfig{WS: &sip.TransportWS{DialURI: func(addr string) string { return "ws://" + addr + "/ws" }}}
	transport := "WS"
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent("siptest-browser"), sipgo.WithUserAgentHostname(host)}
	if tc != nil {
		transports = sip.TransportsConfig{WSS: &sip.TransportWSS{TransportWS: &sip.TransportWS{
			DialURI: func(addr string) string { return "wss://" + addr + "/ws" }}}}
		transport = "WSS"
		opts = append(opts, sipgo.WithUserAgenTLSConfig(tc))
	}
	opts = append(opts, sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerTransports(transports)))
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		return nil, err
	}
	p := &Phone{UA: ua, Transport: transport, peer: httpAddr, Domain: strings.Split(httpAddr, ":")[0], user: user}
	p.Contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: randHex(4), Host: host,
		UriParams: sip.NewParams(), Headers: sip.NewParams()}, Params: sip.NewParams()}
	p.Contact.Address.UriParams.Add("transport", "ws")
	p.Contact.Address.UriParams.Add("ob", "")
	if p.Client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(host)); err != nil {
		ua.Close()
		return nil, err
	}
	if err := p.serve(); err != nil {
		ua.Close()
		return nil, err
	}
	return p, nil
}

// NewUDP returns a phone on a UDP port of its own on 127.0.0.1 that sends
// out-of-dialog requests to peer (Strait's SIP address; empty for a PBX
// that only answers and calls back where it is told).
func NewUDP(peer, user string) (*Phone, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("siptest-udp"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &Phone{UA: ua, Transport: "UDP", peer: peer, Addr: addr.String(), Domain: "127.0.0.1", conn: conn, user: user}
	p.Contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: addr.Port}, Params: sip.NewParams()}
	if p.Client, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(addr.Port),
		sipgo.WithClientConnectionAddr(addr.String())); err != nil {
		ua.Close()
		conn.Close()
		return nil, err
	}
	if err := p.serve(); err != nil {
		ua.Close()
		conn.Close()
		return nil, err
	}
	go p.Server.ServeUDP(conn)
	sipnet.WaitUDP(ua, p.Addr)
	return p, nil
}

// NewTCP returns a phone on a TCP port of its own on 127.0.0.1 (a PBX
// reached with ;transport=tcp); requests it sends open connections to
// peer.
func NewTCP(peer, user string) (*Phone, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("siptest-tcp"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &Phone{UA: ua, Transport: "TCP", peer: peer, Addr: addr.String(), Domain: "127.0.0.1", listener: ln, user: user}
	p.Contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: addr.Port,
		UriParams: sip.NewParams(), Headers: sip.NewParams()}, Params: sip.NewParams()}
	p.Contact.Address.UriParams.Add("transport", "tcp")
	if p.Client, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(addr.Port)); err != nil {
		ua.Close()
		ln.Close()
		return nil, err
	}
	if err := p.serve(); err != nil {
		ua.Close()
		ln.Close()
		return nil, err
	}
	go p.Server.ServeTCP(ln)
	return p, nil
}

// NewTLS returns a phone listening for SIP over TLS on a port of its own
// on 127.0.0.1 with server (its certificate, and whether and how it asks
// for clients'), a PBX reached with ;transport=tls. Requests it sends open
// connections to peer with client (the roots it trusts, its certificate),
// unless a connection to peer is open already: then they reuse it.
func NewTLS(peer, user string, server, client *tls.Config) (*Phone, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("siptest-tls"), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgenTLSConfig(client))
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &Phone{UA: ua, Transport: "TLS", peer: peer, Addr: addr.String(), Domain: "127.0.0.1", listener: ln, user: user}
	p.Contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: addr.Port,
		UriParams: sip.NewParams(), Headers: sip.NewParams()}, Params: sip.NewParams()}
	p.Contact.Address.UriParams.Add("transport", "tls")
	if p.Client, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(addr.Port)); err != nil {
		ua.Close()
		ln.Close()
		return nil, err
	}
	if err := p.serve(); err != nil {
		ua.Close()
		ln.Close()
		return nil, err
	}
	go p.Server.ServeTLS(ln)
	return p, nil
}

func (p *Phone) serve() error {
	srv, err := sipgo.NewServer(p.UA, sipgo.WithServerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	p.Server = srv
	p.Incoming = make(chan *Dialog, 16)
	p.Requests = make(chan *sip.Request, 64)
	p.dialogs = map[string]*Dialog{}
	p.subTags = map[string]string{}
	srv.OnInvite(p.onInvite)
	srv.OnAck(p.onAck)
	srv.OnBye(p.onBye)
	for _, m := range []sip.RequestMethod{sip.INFO, sip.MESSAGE, sip.NOTIFY, sip.REFER, sip.SUBSCRIBE, sip.PUBLISH, sip.OPTIONS, sip.UPDATE, sip.PRACK} {
		srv.OnRequest(m, p.onOther)
	}
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		r := p.registrar
		p.mu.Unlock()
		if r == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
			return
		}
		r.handle(req, tx)
	})
	return nil
}

// Close stops the phone.
func (p *Phone) Close() {
	p.UA.Close()
	if p.conn != nil {
		p.conn.Close()
	}
	if p.listener != nil {
		p.listener.Close()
	}
}

func (p *Phone) dialog(callID string) *Dialog {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialogs[callID]
}

func (p *Phone) addDialog(d *Dialog) {
	p.mu.Lock()
	p.dialogs[d.CallID] = d
	p.mu.Unlock()
}

// SetPeer sets where out-of-dialog requests go.
func (p *Phone) SetPeer(addr string) {
	p.mu.Lock()
	p.peer = addr
	p.mu.Unlock()
}

// Peer is where out-of-dialog requests go.
func (p *Phone) Peer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peer
}

// route sets where an out-of-dialog request goes.
func (p *Phone) route(req *sip.Request) {
	req.SetTransport(p.Transport)
	req.SetDestination(p.Peer())
}

// URI returns sip:user@the phone's peer host, the AOR form Strait expects.
func (p *Phone) URI(user string) sip.Uri {
	host, _, _ := net.SplitHostPort(p.Peer())
	if host == "" {
		host = "127.0.0.1"
	}
	return sip.Uri{Scheme: "sip", User: user, Host: host}
}

// SetUser changes the user the phone calls and registers as (an attacker
// forging its From, in tests). Call it between requests, not during one.
func (p *Phone) SetUser(user string) { p.user = user }

// Register registers the phone's Contact for its user, answering a digest
// challenge with password, and returns the final response.
func (p *Phone) Register(ctx context.Context, password string, expires int) (*sip.Response, error) {
	host, _, _ := net.SplitHostPort(p.Peer())
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host})
	aor := p.URI(p.user)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	req.AppendHeader(from)
	ct := p.Contact.Clone()
	if p.Transport == "WS" || p.Transport == "WSS" {
		ct.Params.Add("+sip.ice", "")
		ct.Params.Add("reg-id", "1")
		ct.Params.Add("+sip.instance", `"<urn:uuid:`+p.Contact.Address.User+`-0000-4000-8000-000000000000>"`)
	}
	ct.Params.Add("expires", fmt.Sprint(expires))
	req.AppendHeader(ct)
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("Supported", "path, gruu, outbound"))
	p.route(req)
	res, err := p.Client.Do(ctx, req)
	if err != nil || (res.StatusCode != 401 && res.StatusCode != 407) || password == "" {
		return res, err
	}
	return p.Client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: password})
}

// Send sends an out-of-dialog request (MESSAGE, SUBSCRIBE, NOTIFY,
// OPTIONS) to user and returns the final response.
func (p *Phone) Send(ctx context.Context, method sip.RequestMethod, user string, body []byte, contentType string, hdrs ...sip.Header) (*sip.Response, error) {
	to := p.URI(user)
	req := sip.NewRequest(method, to)
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	from := &sip.FromHeader{Address: p.URI(p.user), Params: sip.NewParams()}
	from.Params.Add("tag", randHex(5))
	req.AppendHeader(from)
	if method == sip.SUBSCRIBE {
		req.AppendHeader(p.Contact.Clone())
	}
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
		req.SetBody(body)
	}
	p.route(req)
	return p.Client.Do(ctx, req)
}

// SetReply sets Reply while requests may be arriving.
func (p *Phone) SetReply(f func(req *sip.Request) int) {
	p.mu.Lock()
	p.Reply = f
	p.mu.Unlock()
}

func (p *Phone) reply(req *sip.Request) int {
	p.mu.Lock()
	f := p.Reply
	p.mu.Unlock()
	if f != nil {
		return f(req)
	}
	if req.Method == sip.REFER || req.Method == sip.SUBSCRIBE {
		return 202
	}
	return 200
}

func (p *Phone) onOther(req *sip.Request, tx sip.ServerTransaction) {
	code := p.reply(req)
	res := sip.NewResponseFromRequest(req, code, "", nil)
	if req.Method == sip.SUBSCRIBE && code < 300 {
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(cmp.Or(p.SubscribeExpires, 600))))
		res.AppendHeader(p.Contact.Clone())
		tag, _ := res.To().Params.Get("tag")
		p.mu.Lock()
		p.subTags[req.CallID().Value()] = tag
		p.mu.Unlock()
	}
	if req.Method == sip.PUBLISH && code < 300 {
		// RFC 3903 section 6: an entity tag for the publication, and its
		// lifetime as asked.
		res.AppendHeader(sip.NewHeader("SIP-ETag", randHex(8)))
		if exp := req.GetHeader("Expires"); exp != nil {
			res.AppendHeader(sip.NewHeader("Expires", exp.Value()))
		}
	}
	// Queued before the answer: a peer that waits for each answer before
	// its next request (DTMF as INFO) finds them queued in order.
	select {
	case p.Requests <- req:
	default:
	}
	tx.Respond(res)
}

// Notify sends a NOTIFY in the subscription a SUBSCRIBE the phone
// accepted made, with the given Subscription-State, and returns the final
// response.
func (p *Phone) Notify(ctx context.Context, sub *sip.Request, state string, body []byte, contentType string) (*sip.Response, error) {
	p.mu.Lock()
	tag := p.subTags[sub.CallID().Value()]
	p.mu.Unlock()
	req := sip.NewRequest(sip.NOTIFY, *sub.Contact().Address.Clone())
	from := &sip.FromHeader{Address: *sub.To().Address.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: *sub.From().Address.Clone(), Params: sub.From().Params.Clone()}
	req.AppendHeader(to)
	req.AppendHeader(sip.HeaderClone(sub.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	if ev := sub.GetHeader("Event"); ev != nil {
		req.AppendHeader(sip.NewHeader("Event", ev.Value()))
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(p.Contact.Clone())
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
		req.SetBody(body)
	}
	req.SetTransport(p.Transport)
	if p.Transport == "WS" || p.Transport == "WSS" {
		req.SetDestination(p.Peer())
	} else {
		req.SetDestination(sub.Source())
	}
	return p.Client.Do(ctx, req)
}

// Errors.
var (
	// ErrNoCall is returned when waiting for a call that never comes.
	ErrNoCall = errors.New("siptest: no incoming call")
)

// WaitCall waits for an incoming call.
func (p *Phone) WaitCall(timeout time.Duration) (*Dialog, error) {
	select {
	case d := <-p.Incoming:
		return d, nil
	case <-time.After(timeout):
		return nil, ErrNoCall
	}
}

// WaitRequest waits for a received request of a method.
func (p *Phone) WaitRequest(method sip.RequestMethod, timeout time.Duration) (*sip.Request, error) {
	deadline := time.After(timeout)
	for {
		select {
		case r := <-p.Requests:
			if r.Method == method {
				return r, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("siptest: no %s received", method)
		}
	}
}

// Registrar is a digest registrar for a Phone playing a PBX.
type Registrar struct {
	// Realm and Nonce of the challenge.
	Realm, Nonce string

	mu       sync.Mutex
	users    map[string]string
	bindings map[string]Binding // by Contact user part
	seen     []*sip.Request
}

// Binding is what the test PBX registered.
type Binding struct {
	// User is the AOR's user; Contact the registered contact; Expires the
	// granted lifetime in seconds.
	User    string
	Contact sip.Uri
	Expires int
}

// ServeRegistrar makes the phone a registrar for users (name to
// password): REGISTER without valid credentials gets 401.
func (p *Phone) ServeRegistrar(users map[string]string) *Registrar {
	r := &Registrar{Realm: "pbx.test", Nonce: randHex(8), users: users, bindings: map[string]Binding{}}
	p.mu.Lock()
	p.registrar = r
	p.mu.Unlock()
	return r
}

func (r *Registrar) handle(req *sip.Request, tx sip.ServerTransaction) {
	r.mu.Lock()
	r.seen = append(r.seen, req)
	nonce, realm := r.Nonce, r.Realm
	r.mu.Unlock()
	user := req.To().Address.User
	h := req.GetHeader("Authorization")
	ok := false
	if h != nil {
		cr, err := digest.ParseCredentials(h.Value())
		if err == nil && cr.Username == user && cr.Nonce == nonce {
			chal := &digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: cr.Algorithm}
			if cr.QOP != "" {
				chal.QOP = []string{cr.QOP}
			}
			want, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: cr.URI, Username: user,
				Password: r.password(user), Cnonce: cr.Cnonce, Count: cr.Nc})
			ok = err == nil && want.Response == cr.Response
		}
	}
	if !ok {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", (&digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: "MD5"}).String()))
		tx.Respond(res)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	exp := 3600
	if e := req.GetHeader("Expires"); e != nil {
		fmt.Sscan(e.Value(), &exp)
	}
	r.mu.Lock()
	for _, h := range req.GetHeaders("Contact") {
		c := h.(*sip.ContactHeader)
		e := exp
		if v, ok := c.Params.Get("expires"); ok {
			fmt.Sscan(v, &e)
		}
		if e == 0 {
			delete(r.bindings, c.Address.User)
			continue
		}
		e = min(e, 300) // the PBX grants less than asked, as PBXs do
		r.bindings[c.Address.User] = Binding{User: user, Contact: *c.Address.Clone(), Expires: e}
		out := c.Clone()
		out.Params.Add("expires", fmt.Sprint(e))
		res.AppendHeader(out)
	}
	r.mu.Unlock()
	tx.Respond(res)
}

func (r *Registrar) password(user string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.users[user]
}

// Bindings returns the current bindings.
func (r *Registrar) Bindings() []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Binding
	for _, b := range r.bindings {
		out = append(out, b)
	}
	return out
}

// Seen returns every REGISTER received.
func (r *Registrar) Seen() []*sip.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sip.Request(nil), r.seen...)
}

// Package sipnet is Strait's SIP stack: one sipgo user agent with its
// server and client, the listeners (UDP and TCP toward PBXs, TLS when
// configured, WebSocket through the HTTP listener), and Strait's identity
// on each transport (Via sent-by, Contact). The registrar and the B2BUA
// build every request they send through it, so that the headers of the
// side a message came from never reach the other side.
package sipnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// Transports as sipgo names them.
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
	WS  = "WS"
	WSS = "WSS"
)

// IsWebSocket reports whether t is a browser transport.
func IsWebSocket(t string) bool { return strings.EqualFold(t, WS) || strings.EqualFold(t, WSS) }

// Config configures a Stack.
type Config struct {
	// Host is the host Strait names itself with toward SIP peers (Via,
	// Contact, From): the public IP or the SIP listen host.
	Host string
	// Addr is where UDP and TCP listen; TLSAddr is where TLS listens when
	// TLS (the listener's configuration) is set.
	Addr    string
	TLSAddr string
	TLS     *tls.Config
	// ClientTLS configures the TLS connections Strait opens: the roots
	// the peer's certificate must chain to (nil: the system's) and the
	// client certificate for mutual TLS. nil: system roots, no client
	// certificate.
	ClientTLS *tls.Config
	// TLSName, when set, names the TLS peers Strait connects to itself
	// (the upstreams): for a destination it knows, the name to send and
	// check. Other TLS destinations are dialed by sipgo with ClientTLS and
	// the destination's address as the name.
	TLSName func(dest netip.AddrPort) (name string, ok bool)
	// WSHost names Strait in Via and Contact toward browsers.
	WSHost string
	// UserAgent is the User-Agent and Server header value.
	UserAgent string
	// Log and Metrics; Metrics may be nil.
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Admission bounds what sources may send (see admit.go); the zero
	// value admits everything.
	Admission Admission
	// WrapListener, when set, wraps the TCP listeners ("sip_tcp", and
	// "sip_tls" under TLS) before they serve: the connection caps.
	WrapListener func(l net.Listener, name string) net.Listener
}

// Stack is a running SIP stack. Register handlers on Server before Start.
type Stack struct {
	// UA, Server and Client are sipgo's; all three share one transport
	// layer, so a request to a browser leaves on its WebSocket.
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	Client *sipgo.Client

	cfg   Config
	log   *slog.Logger
	admit *admitter        // frozen after New
	retx  *retransmissions // frozen after New: UDP retransmissions (retransmit.go)

	mu        sync.Mutex // guards the fields below
	udpAddr   string     // bound UDP address (ip:port), for reusing the socket
	udp       net.PacketConn
	udpPort   int
	tcpPort   int
	tlsPort   int
	cancel    context.CancelFunc
	listeners []net.Listener

	stray   *strayHandler            // responses that match no transaction
	divert  atomic.Pointer[Divert]   // see relay.go
	peers   tlsPeers                 // TLS connections in use, by peer address
	dialed  *dialedListener          // TLS connections Strait opened, handed to sipgo
	dialMu  sync.Mutex               // guards dialing
	dialing map[string]chan struct{} // TLS dials in progress, by destination

	wg sync.WaitGroup
}

// New creates the user agent, server and client.
func New(cfg Config) (*Stack, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Strait"
	}
	if cfg.WSHost == "" {
		cfg.WSHost = "strait.invalid"
	}
	sipLog := slog.New(quietRefusals{cfg.Log.Handler()}).With("component", "sipgo")
	stray := &strayHandler{}
	clientTLS := cfg.ClientTLS
	if clientTLS == nil {
		clientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	st := &Stack{cfg: cfg, log: cfg.Log, retx: newRetransmissions(cfg.Metrics)}
	st.admit = &admitter{cfg: cfg.Admission, metrics: cfg.Metrics, stack: st}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(cfg.UserAgent), sipgo.WithUserAgentHostname(cfg.Host),
		sipgo.WithUserAgenTLSConfig(clientTLS),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(stray.handle)),
		// The read filter first: the transports option copies it into
		// the transports it brings when it is applied.
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerReadFilter(st.admit.filter),
			sip.WithTransportLayerTransports(transports(cfg.Metrics))))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		ua.Close()
		return nil, err
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog), sipgo.WithClientHostname(cfg.Host))
	if err != nil {
		ua.Close()
		return nil, err
	}
	st.UA, st.Server, st.Client, st.dialed, st.stray = ua, srv, cli, newDialedListener(), stray
	return st, nil
}

// strayHandler passes responses that match no client transaction to
// whoever asked for them (OnStrayResponse).
type strayHandler struct {
	f atomic.Pointer[func(*sip.Response)]
}

func (h *strayHandler) handle(res *sip.Response) {
	if f := h.f.Load(); f != nil {
		(*f)(res)
	}
}

// OnStrayResponse sets the function that gets the responses matching no
// client transaction (RFC 3261 section 17.1.1.2: they go to the UA
// core): a late 2xx to an INVITE, say. It runs on sipgo's goroutine and
// must not block.
func (s *Stack) OnStrayResponse(f func(*sip.Response)) { s.stray.f.Store(&f) }

// Start binds UDP and TCP (and TLS) and serves them; ws, when not nil,
// serves SIP over WebSocket (see package sipws). With port 0 in Addr, UDP
// picks a port and TCP takes the same one.
func (s *Stack) Start(ws net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	udp, tcp, err := listenPair(s.cfg.Addr)
	if err != nil {
		cancel()
		return err
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	if s.cfg.WrapListener != nil {
		tcp = s.cfg.WrapListener(tcp, "sip_tcp")
	}
	s.mu.Lock()
	s.udpAddr = udp.LocalAddr().String()
	s.udp = udp
	s.udpPort = port
	s.tcpPort = tcp.Addr().(*net.TCPAddr).Port
	s.listeners = append(s.listeners, tcp)
	s.mu.Unlock()
	// sipgo writes every UDP datagram through the socket it serves:
	// wrapped, so that retransmissions on the way out are counted.
	s.serve(func() error { return s.Server.ServeUDP(countingConn{PacketConn: udp, r: s.retx}) })
	s.serve(func() error { return s.Server.ServeTCP(tcp) })
	// Requests reuse the listening socket (see Prepare), which sipgo
	// pools only once ServeUDP runs: wait for it.
	WaitUDP(s.UA, s.udpAddr)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); <-ctx.Done(); udp.Close() }()
	if s.cfg.TLS != nil && s.cfg.TLSAddr != "" {
		raw, err := net.Listen("tcp", s.cfg.TLSAddr)
		if err != nil {
			s.Close()
			return fmt.Errorf("sip tls: %w", err)
		}
		if s.cfg.WrapListener != nil {
			raw = s.cfg.WrapListener(raw, "sip_tls")
		}
		tl := tls.NewListener(raw, s.cfg.TLS)
		s.mu.Lock()
		s.tlsPort = tl.Addr().(*net.TCPAddr).Port
		s.listeners = append(s.listeners, tl)
		s.mu.Unlock()
		s.serve(func() error { return s.Server.ServeTLS(trackingListener{Listener: tl, peers: &s.peers}) })
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, s.dialed)
	s.mu.Unlock()
	s.serve(func() error { return s.Server.ServeTLS(s.dialed) })
	if ws != nil {
		s.mu.Lock()
		s.listeners = append(s.listeners, ws)
		s.mu.Unlock()
		s.serve(func() error { return s.Server.ServeWS(ws) })
	}
	return nil
}

// listenPair binds UDP and TCP on addr; with port 0 both get the same
// port, which UDP picks (retried when TCP already has it elsewhere).
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("sip udp: %w", err)
		}
		tcpAddr := addr
		if p == "0" {
			tcpAddr = net.JoinHostPort(host, strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port))
		}
		tcp, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if p != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("sip tcp: %w", err)
		}
	}
}

// WaitUDP waits (at most a second) until ua's transport layer holds the
// UDP listener at addr, so that requests sent from it reuse that socket.
func WaitUDP(ua *sipgo.UserAgent, addr string) {
	for range 200 {
		if p := ua.TransportLayer().Pool("udp"); p != nil && p.Get(addr) != nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Stack) serve(f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("sip listener stopped", "err", err)
		}
	}()
}

// Close stops the listeners and the user agent.
func (s *Stack) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Lock()
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	err := s.UA.Close()
	s.wg.Wait()
	return err
}

// udpConn is the listening UDP socket (nil before Start).
func (s *Stack) udpConn() net.PacketConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udp
}

// UDPAddr is the bound UDP address (ip:port).
func (s *Stack) UDPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr
}

// Port returns Strait's SIP port on transport t (0 for WebSocket).
func (s *Stack) Port(t string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch strings.ToUpper(t) {
	case UDP:
		return s.udpPort
	case TCP:
		return s.tcpPort
	case TLS:
		return s.tlsPort
	}
	return 0
}

// Host is Strait's host toward SIP peers.
func (s *Stack) Host() string { return s.cfg.Host }

// Via returns a new top Via for a request Strait sends on transport t.
func (s *Stack) Via(t string) *sip.ViaHeader {
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(t), Params: sip.NewParams()}
	if IsWebSocket(t) {
		v.Host = s.cfg.WSHost
	} else {
		v.Host, v.Port = s.cfg.Host, s.Port(t)
		v.Params.Add("rport", "")
	}
	v.Params.Add("branch", sip.GenerateBranchN(16))
	return v
}

// ContactURI returns Strait's URI on transport t with the given user part.
func (s *Stack) ContactURI(t, user string) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, UriParams: sip.NewParams(), Headers: sip.NewParams()}
	if IsWebSocket(t) {
		u.Host = s.cfg.WSHost
		u.UriParams.Add("transport", "ws")
		return u
	}
	u.Host, u.Port = s.cfg.Host, s.Port(t)
	if !strings.EqualFold(t, UDP) {
		u.UriParams.Add("transport", strings.ToLower(t))
	}
	return u
}

// Contact returns a Contact header with ContactURI.
func (s *Stack) Contact(t, user string) *sip.ContactHeader {
	return &sip.ContactHeader{Address: s.ContactURI(t, user), Params: sip.NewParams()}
}

// Route says where a request goes: the transport and the address (for
// WebSocket, the browser's flow).
type Route struct {
	Transport string
	Dest      string // host:port
}

// Prepare sets a request's destination and transport, a fresh top Via,
// Max-Forwards and User-Agent when missing, and, for UDP, the listening
// socket as the source (so that the PBX sees Strait at its SIP port).
func (s *Stack) Prepare(req *sip.Request, r Route) {
	req.SetTransport(strings.ToUpper(r.Transport))
	req.SetDestination(r.Dest)
	req.RemoveHeader("Via")
	req.PrependHeader(s.Via(r.Transport))
	if req.MaxForwards() == nil {
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
	}
	if Header(req, "User-Agent") == nil {
		req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	}
	if strings.EqualFold(r.Transport, UDP) {
		if h, p, err := sip.ParseAddr(s.UDPAddr()); err == nil {
			req.Laddr = sip.Addr{IP: net.ParseIP(h), Port: p, Hostname: h}
		}
	}
	if req.Body() == nil {
		req.SetBody(nil)
	}
	s.cfg.Metrics.Request(string(req.Method), false)
}

// asIs is a ClientRequestOption that leaves a prepared request alone.
func asIs(*sipgo.Client, *sip.Request) error { return nil }

// Transaction starts a client transaction for a prepared request. It may
// open a connection to the request's destination (see dial.go).
func (s *Stack) Transaction(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	if strings.EqualFold(req.Transport(), TLS) {
		if err := s.ensureTLS(ctx, req.Destination()); err != nil {
			return nil, err
		}
	}
	return s.Client.TransactionRequest(allowDial(ctx), req, asIs)
}

// Do sends a prepared non-INVITE request and returns its final response.
func (s *Stack) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := s.Transaction(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			s.cfg.Metrics.Response(string(req.Method), res.StatusCode, true)
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			err := tx.Err()
			if err == nil {
				err = sip.ErrTransactionTimeout
			}
			s.cfg.Metrics.TransactionFailed(string(req.Method), TxFailure(err))
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TxFailure names why a client transaction ended without a final
// response, as strait_sip_transaction_failures_total counts it.
func TxFailure(err error) string {
	switch {
	case errors.Is(err, sip.ErrTransactionTransport):
		return metrics.TxTransport
	case errors.Is(err, sip.ErrTransactionTimeout), err == nil:
		return metrics.TxTimeout
	}
	return "other"
}

// Write sends a prepared request outside any transaction (ACK). Like
// sipgo's Client.WriteRequest, but under a context that may open a
// connection to the request's destination (see dial.go).
func (s *Stack) Write(req *sip.Request) error {
	ctx, cancel := context.WithTimeout(allowDial(context.Background()), dialTimeout)
	defer cancel()
	if strings.EqualFold(req.Transport(), TLS) {
		if err := s.ensureTLS(ctx, req.Destination()); err != nil {
			return err
		}
	}
	conn, err := s.UA.TransportLayer().ClientRequestConnection(ctx, req)
	if err != nil {
		return err
	}
	defer conn.TryClose()
	return conn.WriteMsg(req)
}

// Respond answers a request with a status and optional body and headers.
func (s *Stack) Respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) error {
	return s.RespondWith(tx, s.Response(req, code, reason, body, hdrs...))
}

// Response builds a response to req with the Server header set. The
// request's Record-Route values are copied, in order, into every 1xx
// (but 100) and 2xx (sipgo's NewResponseFromRequest does it): RFC 3261
// section 12.1.1 makes a UAS copy them into each response that
// establishes a dialog, and a proxy that record-routed the request
// (Kamailio, a carrier's edge) drops in-dialog requests that do not come
// back through it.
func (s *Stack) Response(req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	if reason == "" {
		reason = ReasonPhrase(code)
	}
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if Header(res, "Server") == nil {
		res.AppendHeader(sip.NewHeader("Server", s.cfg.UserAgent))
	}
	return res
}

// RespondWith sends a built response on tx and counts it.
func (s *Stack) RespondWith(tx sip.ServerTransaction, res *sip.Response) error {
	if c := res.CSeq(); c != nil {
		s.cfg.Metrics.Response(string(c.MethodName), res.StatusCode, false)
	}
	return tx.Respond(res)
}

// T1 is the SIP round-trip estimate that paces 2xx retransmission over
// UDP (RFC 3261 section 17.1.1.1).
const T1 = 500 * time.Millisecond

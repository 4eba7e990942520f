package attack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// attackerIP returns the i-th attacker's source address: 127.0.0.2 and up
// (the legitimate caller is 127.0.0.1).
func attackerIP(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i%250) }

// token returns n random bytes in hex, for tags, branches and Call-IDs.
func token(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sipMsg is a SIP request as an attacker writes it: by hand, every header
// under its control.
type sipMsg struct {
	Method, RURI string
	// Via is the top Via's value without branch ("SIP/2.0/UDP h:p;rport").
	Via     string
	From    string // with tag
	To      string
	CallID  string
	CSeq    int
	Contact string
	// Headers are extra "Name: value" lines.
	Headers []string
	Body    string
}

// String renders the request with a fresh branch.
func (m sipMsg) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.Method, m.RURI)
	fmt.Fprintf(&b, "Via: %s;branch=z9hG4bK%s\r\n", m.Via, token(8))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", m.From, m.To, m.CallID, m.CSeq, m.Method)
	if m.Contact != "" {
		fmt.Fprintf(&b, "Contact: %s\r\n", m.Contact)
	}
	for _, h := range m.Headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(m.Body), m.Body)
	return b.String()
}

// register returns a REGISTER for user@host from a contact at via's
// address over transport.
func register(transport, src string, srcPort int, host, user string, cseq int) sipMsg {
	return sipMsg{Method: "REGISTER", RURI: "sip:" + host,
		Via:     fmt.Sprintf("SIP/2.0/%s %s;rport", transport, hostPort(src, srcPort)),
		From:    fmt.Sprintf("<sip:%s@%s>;tag=%s", user, host, token(4)),
		To:      fmt.Sprintf("<sip:%s@%s>", user, host),
		CallID:  token(10),
		CSeq:    cseq,
		Contact: fmt.Sprintf("<sip:%s@%s;transport=%s>", user, hostPort(src, srcPort), strings.ToLower(transport)),
		Headers: []string{"Expires: 300"}}
}

// hostPort is host:port, or host alone when port is 0 (a browser's
// .invalid host over WebSocket).
func hostPort(host string, port int) string {
	if port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// options returns an OPTIONS to host with the given Via transport and sent-by.
func options(transport, sentBy, host string) sipMsg {
	return sipMsg{Method: "OPTIONS", RURI: "sip:" + host, Via: fmt.Sprintf("SIP/2.0/%s %s", transport, sentBy),
		From: fmt.Sprintf("<sip:probe@%s>;tag=%s", host, token(4)), To: "<sip:" + host + ">", CallID: token(10), CSeq: 1}
}

var statusLine = regexp.MustCompile(`^SIP/2\.0 (\d{3}) `)

// statusOf returns a response's status code, or 0 when msg is not one.
func statusOf(msg string) int {
	m := statusLine.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// header returns the first value of a header in a raw message.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// udpFrom opens a UDP socket on src (an attacker address).
func udpFrom(src string) (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
}

// dialTCPFrom opens a TCP connection from src to addr.
func dialTCPFrom(ctx context.Context, src, addr string) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// readSIPStream reads one SIP message (headers and Content-Length body)
// from a stream.
func readSIPStream(r *bufio.Reader) (string, error) {
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			if b.Len() <= 2 { // keepalive CRLF between messages
				b.Reset()
				continue
			}
			break
		}
		if k, v, ok := strings.Cut(t, ":"); ok && (strings.EqualFold(k, "Content-Length") || k == "l") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return b.String(), err
	}
	return b.String() + string(body), nil
}

// wsConn is SIP over WebSocket from an attacker address (RFC 7118): one
// text frame per message.
type wsConn struct{ net.Conn }

// dialWSFrom opens a SIP WebSocket from src to strait's /ws URL.
func dialWSFrom(ctx context.Context, src, url string) (*wsConn, error) {
	d := ws.Dialer{Protocols: []string{"sip"}, Timeout: 5 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return nd.DialContext(ctx, "tcp4", addr)
		}}
	c, _, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &wsConn{c}, nil
}

// Send writes one SIP message as a text frame.
func (c *wsConn) Send(msg string) error { return wsutil.WriteClientText(c.Conn, []byte(msg)) }

// Recv reads the next SIP message (text frame).
func (c *wsConn) Recv(timeout time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	b, err := wsutil.ReadServerText(c.Conn)
	return string(b), err
}

// exchange sends one request from src over transport ("UDP", "TCP" or
// "WS") on a socket or connection of its own and returns the final
// response. build gets the local address and port to name in Via and
// Contact.
func exchange(ctx context.Context, tg *target, transport, src string, build func(host string, port int) sipMsg) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	final := func(next func() (string, error)) (string, error) {
		for {
			res, err := next()
			if err != nil {
				return res, err
			}
			if code := statusOf(res); code >= 200 {
				return res, nil
			}
		}
	}
	switch transport {
	case "UDP":
		u, err := udpFrom(src)
		if err != nil {
			return "", err
		}
		defer u.Close()
		dst, err := net.ResolveUDPAddr("udp4", tg.SIPAddr)
		if err != nil {
			return "", err
		}
		if _, err := u.WriteTo([]byte(build(src, u.LocalAddr().(*net.UDPAddr).Port).String()), dst); err != nil {
			return "", err
		}
		u.SetReadDeadline(deadline)
		buf := make([]byte, 65536)
		return final(func() (string, error) {
			n, err := u.Read(buf)
			return string(buf[:n]), err
		})
	case "TCP":
		c, err := dialTCPFrom(ctx, src, tg.SIPAddr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		if _, err := c.Write([]byte(build(src, c.LocalAddr().(*net.TCPAddr).Port).String())); err != nil {
			return "", err
		}
		c.SetReadDeadline(deadline)
		r := bufio.NewReader(c)
		return final(func() (string, error) { return readSIPStream(r) })
	case "WS":
		c, err := dialWSFrom(ctx, src, tg.WS())
		if err != nil {
			return "", err
		}
		defer c.Close()
		if err := c.Send(build(token(4)+".invalid", 0).String()); err != nil {
			return "", err
		}
		return final(func() (string, error) { return c.Recv(time.Until(deadline)) })
	}
	return "", fmt.Errorf("unknown transport %q", transport)
}

// transports are the SIP transports an attacker tries in turn.
var transports = []string{"UDP", "TCP", "WS"}

// udpSession is one attacker socket that sends requests one at a time
// and reads their final responses.
type udpSession struct {
	conn *net.UDPConn
	dst  *net.UDPAddr
	buf  []byte
}

func newUDPSession(src, dst string) (*udpSession, error) {
	u, err := udpFrom(src)
	if err != nil {
		return nil, err
	}
	d, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		u.Close()
		return nil, err
	}
	return &udpSession{conn: u, dst: d, buf: make([]byte, 65536)}, nil
}

// Port is the session's local port.
func (s *udpSession) Port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

func (s *udpSession) Close() { s.conn.Close() }

// Do sends m and returns the final response with its Call-ID.
func (s *udpSession) Do(m sipMsg, timeout time.Duration) (string, error) {
	if _, err := s.conn.WriteTo([]byte(m.String()), s.dst); err != nil {
		return "", err
	}
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, err := s.conn.Read(s.buf)
		if err != nil {
			return "", err
		}
		res := string(s.buf[:n])
		if statusOf(res) >= 200 && header(res, "Call-ID") == m.CallID {
			return res, nil
		}
	}
}

// session is an attacker's connection (or socket) that sends requests one
// at a time and reads their final responses: UDP, TCP or WS.
type session interface {
	// Do sends m and returns its final response.
	Do(m sipMsg) (string, error)
	// Via is what the session names itself with: transport, host, port
	// (0 over WebSocket).
	Via() (transport, host string, port int)
	Close()
}

type udpSess struct {
	*udpSession
	src string
}

func (s udpSess) Do(m sipMsg) (string, error) { return s.udpSession.Do(m, 5*time.Second) }
func (s udpSess) Via() (string, string, int)  { return "UDP", s.src, s.Port() }

type tcpSess struct {
	c   *net.TCPConn
	r   *bufio.Reader
	src string
}

func (s tcpSess) Do(m sipMsg) (string, error) {
	if _, err := s.c.Write([]byte(m.String())); err != nil {
		return "", err
	}
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		res, err := readSIPStream(s.r)
		if err != nil {
			return res, err
		}
		if statusOf(res) >= 200 && header(res, "Call-ID") == m.CallID {
			return res, nil
		}
	}
}
func (s tcpSess) Via() (string, string, int) {
	return "TCP", s.src, s.c.LocalAddr().(*net.TCPAddr).Port
}
func (s tcpSess) Close() { s.c.Close() }

type wsSess struct {
	c    *wsConn
	host string
}

func (s wsSess) Do(m sipMsg) (string, error) {
	if err := s.c.Send(m.String()); err != nil {
		return "", err
	}
	for {
		res, err := s.c.Recv(5 * time.Second)
		if err != nil {
			return res, err
		}
		if statusOf(res) >= 200 && header(res, "Call-ID") == m.CallID {
			return res, nil
		}
	}
}
func (s wsSess) Via() (string, string, int) { return "WS", s.host, 0 }
func (s wsSess) Close()                     { s.c.Close() }

// openSession opens an attacker session from src to strait over transport.
func openSession(ctx context.Context, tg *target, transport, src string) (session, error) {
	switch transport {
	case "UDP":
		u, err := newUDPSession(src, tg.SIPAddr)
		if err != nil {
			return nil, err
		}
		return udpSess{u, src}, nil
	case "TCP":
		c, err := dialTCPFrom(ctx, src, tg.SIPAddr)
		if err != nil {
			return nil, err
		}
		return tcpSess{c: c, r: bufio.NewReader(c), src: src}, nil
	case "WS":
		c, err := dialWSFrom(ctx, src, tg.WS())
		if err != nil {
			return nil, err
		}
		return wsSess{c: c, host: token(4) + ".invalid"}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

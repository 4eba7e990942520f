// Package sipws puts SIP over WebSocket (RFC 7118) on the HTTP listener.
//
// sipgo's WebSocket transport wants a whole net.Listener and upgrades every
// connection it accepts, whatever the path. Strait serves its web page, its
// API and SIP on one port (one certificate, one firewall rule), so the HTTP
// server routes /ws here instead: [Listener] is an http.Handler that
// hijacks the upgrade request's connection and hands it, with the request
// bytes replayed in front, to sipgo through Accept. TLS (WSS) is already
// terminated by the HTTP server at that point, so sipgo sees plain WS.
//
// Each connection is a flow (RFC 5626): requests toward a browser go back
// over the connection it registered on, and when that connection closes
// the registrar drops its bindings. Listener reports closes through
// [Listener.OnClose] with the flow's key, the remote address sipgo records
// as the source of every message from the connection.
package sipws

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Subprotocol is the WebSocket subprotocol of SIP (RFC 7118 section 4.1).
const Subprotocol = "sip"

// upgradeWriteTimeout bounds sipgo's write of the 101 response, which
// happens in its accept loop: a client that never reads cannot stall
// every other upgrade for longer than this.
const upgradeWriteTimeout = 5 * time.Second

// acceptQueue is how many hijacked connections may wait for sipgo's accept
// loop; upgrades beyond it get 503.
const acceptQueue = 64

// Listener is both the http.Handler for /ws and the net.Listener sipgo's
// WebSocket transport serves. The zero value is not usable; call New.
type Listener struct {
	addr net.Addr
	log  *slog.Logger

	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex // guards onClose and open
	onClose []func(flow string)
	open    map[string]*conn
}

// New returns a listener that reports addr (the HTTP listener's address)
// as its own.
func New(addr net.Addr, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{addr: addr, log: log, conns: make(chan net.Conn, acceptQueue),
		closed: make(chan struct{}), open: map[string]*conn{}}
}

// OnClose registers f to be called, in its own goroutine, with the flow key
// of every connection that closes.
func (l *Listener) OnClose(f func(flow string)) {
	l.mu.Lock()
	l.onClose = append(l.onClose, f)
	l.mu.Unlock()
}

// Open reports whether the flow (a connection's remote address) is still
// connected.
func (l *Listener) Open(flow string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.open[flow]
	return ok
}

// Flows returns the number of open connections.
func (l *Listener) Flows() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// ServeHTTP takes a WebSocket upgrade request asking for the sip
// subprotocol and passes its connection to sipgo. Anything else gets 400
// (426 for a plain GET) without reaching sipgo.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "SIP over WebSocket: upgrade required", http.StatusUpgradeRequired)
		return
	}
	if r.Method != http.MethodGet || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "bad WebSocket handshake", http.StatusBadRequest)
		return
	}
	if !headerHas(r.Header, "Sec-WebSocket-Protocol", Subprotocol) {
		http.Error(w, "WebSocket subprotocol \"sip\" required (RFC 7118)", http.StatusBadRequest)
		return
	}
	select {
	case <-l.closed:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		l.log.Debug("ws hijack failed", "err", err)
		return
	}
	// Replay the handshake for sipgo's upgrader, then whatever the client
	// already sent after it.
	var head bytes.Buffer
	fmt.Fprintf(&head, "GET %s HTTP/1.1\r\nHost: %s\r\n", r.URL.RequestURI(), r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("\r\n")
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		head.Write(b)
	}
	c := &conn{Conn: raw, l: l, flow: raw.RemoteAddr().String(), pending: head.Bytes(), upgrading: true, opened: time.Now()}
	// The HTTP server's read deadline (its ReadTimeout) must not outlive
	// the request: from here on the connection is a SIP flow, closed by
	// CloseIdle when it holds nothing.
	raw.SetReadDeadline(time.Time{})
	raw.SetWriteDeadline(time.Now().Add(upgradeWriteTimeout))
	l.mu.Lock()
	l.open[c.flow] = c
	l.mu.Unlock()
	select {
	case l.conns <- c:
	default:
		c.Close()
		l.log.Warn("ws accept queue full; connection dropped", "remote", c.flow)
	}
}

// Attach serves c, a WebSocket connection from its first byte (the
// client's handshake) whose far end is not a browser on this listener but
// a browser another control plane holds (package cluster relays it): to
// sipgo and to everything that asks about flows it is one more flow,
// named flow (c's RemoteAddr must print as flow), reported closed when c
// ends. It fails when the listener is closed or its queue is full.
func (l *Listener) Attach(c net.Conn, flow string) error {
	select {
	case <-l.closed:
		return net.ErrClosed
	default:
	}
	cc := &conn{Conn: c, l: l, flow: flow, opened: time.Now()}
	l.mu.Lock()
	if _, dup := l.open[flow]; dup {
		l.mu.Unlock()
		return fmt.Errorf("sipws: flow %s is open already", flow)
	}
	l.open[flow] = cc
	l.mu.Unlock()
	select {
	case l.conns <- cc:
		return nil
	default:
		cc.Close()
		return errors.New("sipws: accept queue full")
	}
}

// CloseFlow closes the flow's connection, if open.
func (l *Listener) CloseFlow(flow string) {
	l.mu.Lock()
	c := l.open[flow]
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// CloseIdle closes every flow open for longer than d that keep does not
// want kept (keep says whether a flow holds a registration or a call), and
// returns how many it closed. Run it periodically: it is the deadline for
// a WebSocket to register, and the end of one that no longer holds
// anything.
func (l *Listener) CloseIdle(d time.Duration, keep func(flow string) bool) int {
	cutoff := time.Now().Add(-d)
	l.mu.Lock()
	var idle []*conn
	for _, c := range l.open {
		if c.opened.Before(cutoff) {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	n := 0
	for _, c := range idle {
		if !keep(c.flow) {
			c.Close()
			n++
		}
	}
	return n
}

// Accept returns the next upgraded connection; after Close it returns
// net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and closes every open connection.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	l.mu.Lock()
	open := make([]*conn, 0, len(l.open))
	for _, c := range l.open {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	return nil
}

// Addr is the HTTP listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

func (l *Listener) closedConn(c *conn) {
	l.mu.Lock()
	if l.open[c.flow] == c {
		delete(l.open, c.flow)
	}
	fs := append([]func(string){}, l.onClose...)
	l.mu.Unlock()
	for _, f := range fs {
		go f(c.flow)
	}
}

// conn is a hijacked connection with the handshake replayed in front. It
// reports its end (EOF, read error or Close) once.
type conn struct {
	net.Conn
	l      *Listener
	flow   string
	opened time.Time // frozen after ServeHTTP

	mu        sync.Mutex
	pending   []byte
	upgrading bool
	once      sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	if err != nil && !errors.Is(err, io.ErrShortBuffer) && !isTimeout(err) {
		c.ended()
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	if c.upgrading {
		// The first write is the 101 answer: lift the upgrade deadline.
		c.upgrading = false
		c.Conn.SetWriteDeadline(time.Time{})
	}
	c.mu.Unlock()
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.ended()
	return err
}

func (c *conn) ended() { c.once.Do(func() { c.l.closedConn(c) }) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// headerHas reports whether a comma-separated header lists token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

package sipnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// SIP over TLS toward upstreams.
//
// sipgo dials a TLS connection with one configuration for every peer and
// names the server by the host of the request's destination, which
// Strait sets to an address (names are resolved in the background, never
// on a request's path: see package upstream). So the upstream's name
// would be neither sent (SNI) nor checked. Instead Strait opens its TLS
// connections to upstreams itself, with the upstream's host as the server
// name, its CA bundle and Strait's client certificate, and hands each
// finished connection to sipgo through a listener of its own: sipgo pools
// it under the peer's address like an accepted one, and every request to
// that address reuses it. Connections the upstream opens to Strait's TLS
// listener are asked for a client certificate, which package upstream
// checks when a request arrives on one (crypto/tls does not: a PBX often
// shows its server certificate, without the clientAuth usage).

// tlsHandshakeTimeout bounds a TLS handshake Strait starts.
const tlsHandshakeTimeout = 10 * time.Second

// trackedConn is a TLS connection whose state the stack can look up by
// the peer's address while sipgo holds it.
type trackedConn struct {
	*tls.Conn
	once    sync.Once
	onClose func()
}

// Close forgets the connection, then closes it.
func (c *trackedConn) Close() error {
	c.once.Do(c.onClose)
	return c.Conn.Close()
}

// tlsPeers holds the TLS connections in use, by peer address.
type tlsPeers struct {
	mu sync.Mutex // guards m
	m  map[string]*trackedConn
}

func (p *tlsPeers) track(c *tls.Conn) *trackedConn {
	addr := c.RemoteAddr().String()
	tc := &trackedConn{Conn: c}
	tc.onClose = func() {
		p.mu.Lock()
		if p.m[addr] == tc {
			delete(p.m, addr)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*trackedConn{}
	}
	p.m[addr] = tc
	p.mu.Unlock()
	return tc
}

func (p *tlsPeers) get(addr string) (*trackedConn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.m[addr]
	return c, ok
}

// trackingListener records every connection a TLS listener accepts.
type trackingListener struct {
	net.Listener
	peers *tlsPeers
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil
	}
	return l.peers.track(tc), nil
}

// dialedListener hands the connections Strait opened to sipgo's TLS
// transport, which serves it like any listener.
type dialedListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newDialedListener() *dialedListener {
	return &dialedListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *dialedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *dialedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: the listener has no address of its own.
func (l *dialedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// hand passes a connection to sipgo.
func (l *dialedListener) hand(ctx context.Context, c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TLSPeer returns the state of the TLS connection with the peer at addr
// (a request's Source), if there is one.
func (s *Stack) TLSPeer(addr string) (tls.ConnectionState, bool) {
	c, ok := s.peers.get(addr)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return c.ConnectionState(), true
}

// ErrTLSDial is a TLS connection to an upstream that could not be made.
var ErrTLSDial = errors.New("sipnet: TLS connection to the upstream failed")

// ensureTLS makes sure sipgo holds a TLS connection to dest when dest is
// a peer Strait knows the TLS name of (an upstream), opening it with
// that name when there is none. Other destinations are left to sipgo.
func (s *Stack) ensureTLS(ctx context.Context, dest string) error {
	if s.cfg.TLSName == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(dest)
	if err != nil {
		return nil
	}
	name, ok := s.cfg.TLSName(ap)
	if !ok {
		return nil
	}
	if c, _ := s.UA.TransportLayer().GetConnection("tls", dest); c != nil {
		return nil
	}
	// One dial per destination at a time: the others wait for it.
	s.dialMu.Lock()
	if s.dialing == nil {
		s.dialing = map[string]chan struct{}{}
	}
	if wait, ok := s.dialing[dest]; ok {
		s.dialMu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c, _ := s.UA.TransportLayer().GetConnection("tls", dest); c != nil {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrTLSDial, dest)
	}
	done := make(chan struct{})
	s.dialing[dest] = done
	s.dialMu.Unlock()
	defer func() {
		s.dialMu.Lock()
		delete(s.dialing, dest)
		s.dialMu.Unlock()
		close(done)
	}()
	if err := s.dialTLS(ctx, dest, name); err != nil {
		s.log.Warn("TLS connection to the upstream failed", "dest", dest, "name", name, "err", err)
		return fmt.Errorf("%w: %s (%s): %v", ErrTLSDial, dest, name, err)
	}
	return nil
}

// dialTLS connects to dest, checks that it is name, and hands the
// connection to sipgo.
func (s *Stack) dialTLS(ctx context.Context, dest, name string) error {
	ctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		return err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.ClientTLS != nil {
		cfg = s.cfg.ClientTLS.Clone()
	}
	cfg.ServerName = name
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return err
	}
	tc := s.peers.track(c)
	if err := s.dialed.hand(ctx, tc); err != nil {
		tc.Close()
		return err
	}
	// sipgo pools it right after accepting it.
	for range 200 {
		if c, _ := s.UA.TransportLayer().GetConnection("tls", dest); c != nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("sipgo did not take the connection")
}

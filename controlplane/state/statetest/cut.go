package statetest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy relays TCP connections to a server until Cut: then it closes
// what it relays and closes every new connection at once (a process cut
// off from Redis while others still reach it), until Restore. A store
// opened on its address loses its subscriptions while cut, and its client
// makes them again once restored.
type CutProxy struct {
	// Addr is the proxy's HOST:PORT; URL is redis://Addr/0.
	Addr, URL string

	ln net.Listener // frozen
	to string       // frozen

	mu    sync.Mutex // guards the fields below
	cut   bool
	conns map[net.Conn]struct{}
}

// NewCutProxy relays to the server at to until the test ends.
func NewCutProxy(t testing.TB, to string) *CutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{ln: ln, to: to, Addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.URL = "redis://" + p.Addr + "/0"
	t.Cleanup(func() { ln.Close(); p.Cut() })
	go p.serve()
	return p
}

func (p *CutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		if !cut {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		go p.relay(c)
	}
}

func (p *CutProxy) relay(c net.Conn) {
	up, err := net.Dial("tcp", p.to)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut { // cut while dialling
		p.mu.Unlock()
		up.Close()
		c.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close(); c.Close() }()
	io.Copy(c, up)
	c.Close()
	up.Close()
}

// Cut closes every relayed connection and refuses new ones.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore relays new connections again.
func (p *CutProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

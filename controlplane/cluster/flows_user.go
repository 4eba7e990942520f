// The user's side of a relayed flow: a peer's browser WebSocket as one
// more flow of this member's SIP stack (see Flows in flows.go).

package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/strait-sbc/strait/controlplane/sipws"
)

// --- the user's side ---

// ErrHolderGone is returned for a flow whose holder holds no live lease.
var ErrHolderGone = errors.New("cluster: the control plane holding the flow is gone")

// ErrFlowMoved is returned for a flow its holder handed over (SIGUSR2) or
// that died with it: the browser registers again on a new flow.
var ErrFlowMoved = errors.New("cluster: the browser's WebSocket was handed over; it reconnects on a new flow")

// Flow returns the name under which this process's stack reaches the
// flow holder holds (the browser's address there): a flow of its own
// when holder is this process, else a relayed one, set up on first use.
func (f *Flows) Flow(holder, flow, callID string) (string, error) {
	if holder == "" || holder == f.self {
		return flow, nil
	}
	if !f.cfg.Member.IsLive(holder) {
		return "", ErrHolderGone
	}
	if f.wasMoved(relayKey{holder: holder, flow: flow}) {
		return "", ErrFlowMoved
	}
	r, err := f.relayFor(relayKey{holder: holder, flow: flow})
	if err != nil {
		return "", err
	}
	select {
	case <-r.ready:
	case <-time.After(relaySetupTimeout):
		return "", errors.New("cluster: relayed flow not set up in time")
	}
	if r.err != nil {
		return "", r.err
	}
	if callID != "" {
		if _, done := r.claimed.LoadOrStore(callID, true); !done {
			if err := f.publish(holder, flowMsg{Op: opClaim, Flow: flow, Data: []byte(callID)}); err != nil {
				r.claimed.Delete(callID)
				return "", err
			}
		}
	}
	return r.name, nil
}

// relayFor returns the relay of k, starting its setup when new.
func (f *Flows) relayFor(k relayKey) (*relayFlow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, net.ErrClosed
	}
	if r := f.relays[k]; r != nil {
		return r, nil
	}
	f.next++
	n := f.next
	// 100::/64 is discard-only (RFC 6666): no browser ever connects from
	// it, so a relayed flow's name never collides with a flow of this
	// process's own.
	ip := net.IP{0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	name := (&net.TCPAddr{IP: ip, Port: 5060}).String() // printed as sipgo prints it
	near, far := net.Pipe()
	r := &relayFlow{key: k, name: name, far: far, in: make(chan []byte, relayQueue), ready: make(chan struct{})}
	f.relays[k] = r
	f.wg.Add(1)
	go f.setup(r, near)
	return r, nil
}

// setup attaches the relay's near end to the stack as a WebSocket flow
// and runs its far end: the handshake, then a reader (stack to holder)
// and a writer (holder to stack).
func (f *Flows) setup(r *relayFlow, near net.Conn) {
	defer f.wg.Done()
	remote, _ := net.ResolveTCPAddr("tcp", r.name)
	err := f.cfg.WS.Attach(namedConn{Conn: near, local: f.cfg.WS.Addr(), remote: remote}, r.name)
	if err == nil {
		r.far.SetDeadline(time.Now().Add(relaySetupTimeout))
		u := &url.URL{Scheme: "ws", Host: r.key.holder, Path: "/ws"}
		var br *bufio.Reader
		br, _, err = ws.Dialer{Protocols: []string{sipws.Subprotocol}}.Upgrade(r.far, u)
		if err == nil && br != nil && br.Buffered() > 0 {
			err = errors.New("unexpected data after the handshake")
		}
		r.far.SetDeadline(time.Time{})
	}
	// sipgo pools the connection right after its handshake answer.
	for deadline := time.Now().Add(relaySetupTimeout); err == nil && !f.cfg.Stack.HasFlow(r.name); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			err = errors.New("the stack did not take the relayed flow")
		}
	}
	if err != nil {
		r.err = fmt.Errorf("cluster: relayed flow from %s: %w", r.key.holder, err)
		close(r.ready)
		r.far.Close()
		near.Close()
		f.forget(r)
		return
	}
	close(r.ready)
	f.log.Debug("cluster: relaying a peer's browser flow", "holder", r.key.holder, "flow", r.key.flow, "as", r.name)
	done := make(chan struct{})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-done:
				return
			case b := <-r.in:
				if err := wsutil.WriteClientText(r.far, b); err != nil {
					return
				}
			}
		}
	}()
	for {
		b, err := wsutil.ReadServerText(r.far)
		if err != nil {
			break
		}
		if err := f.publish(r.key.holder, flowMsg{Op: opOut, Flow: r.key.flow, Data: b}); err != nil {
			f.count(opOut, "dropped")
			f.log.Warn("cluster: a message toward a peer's browser not passed on", "holder", r.key.holder, "err", err)
		}
	}
	close(done)
	r.far.Close()
	f.forget(r)
	if !r.byHolder.Load() {
		f.publish(r.key.holder, flowMsg{Op: opUnrelay, Flow: r.key.flow})
	}
}

// forget drops r from the relays.
func (f *Flows) forget(r *relayFlow) {
	f.mu.Lock()
	if f.relays[r.key] == r {
		delete(f.relays, r.key)
	}
	f.mu.Unlock()
}

// fromBrowser hands a browser's message from its holder to this stack,
// setting the relay up again if this process no longer has it (it
// restarted, or took the dialog over from a dead member).
func (f *Flows) fromBrowser(m flowMsg) {
	k := relayKey{holder: m.From, flow: m.Flow}
	if f.wasMoved(k) {
		// The holder's last messages before its WebSocket closed: the
		// relay was let go (SIP's timers recover, as on a closed flow).
		f.count(opIn, "dropped")
		return
	}
	r, err := f.relayFor(k)
	if err != nil {
		return
	}
	select {
	case r.in <- m.Data:
	default:
		f.count(opIn, "dropped")
		f.log.Warn("cluster: relay from a browser is full; message dropped", "holder", m.From, "flow", m.Flow)
	}
}

// holderClosed closes the relay of a flow whose WebSocket closed.
func (f *Flows) holderClosed(k relayKey) {
	f.mu.Lock()
	r := f.relays[k]
	f.mu.Unlock()
	if r != nil {
		r.byHolder.Store(true)
		r.far.Close()
	}
}

// holderMoved lets go of a relayed flow whose holder handed the browser's
// WebSocket over (or died with it): the browser reconnects and registers
// again, maybe elsewhere. The flow is never relayed through again; the
// stack sees it close, and TakeMoved tells the closing apart from a
// browser that left, so that the calls on it wait for the browser's new
// flow instead of ending.
func (f *Flows) holderMoved(k relayKey) {
	now := time.Now()
	f.mu.Lock()
	for mk, at := range f.moved {
		if now.Sub(at) > movedMemory || len(f.moved) >= maxMoved {
			delete(f.moved, mk)
		}
	}
	for name, at := range f.movedNames {
		if now.Sub(at) > movedMemory {
			delete(f.movedNames, name)
		}
	}
	f.moved[k] = now
	r := f.relays[k]
	if r != nil {
		f.movedNames[r.name] = now
	}
	f.mu.Unlock()
	if f.cfg.OnMoved != nil {
		f.cfg.OnMoved(k.holder, k.flow)
	}
	if r != nil {
		f.log.Info("cluster: a peer's browser flow was handed over; its calls here wait for the browser's new one",
			"holder", k.holder, "flow", k.flow)
		r.byHolder.Store(true)
		r.far.Close()
	}
}

// wasMoved reports whether k's holder let it go (holderMoved).
func (f *Flows) wasMoved(k relayKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.moved[k]
	return ok && time.Since(at) <= movedMemory
}

// TakeMoved reports whether the relayed flow this stack names name closed
// because its holder handed it over or died (the browser comes back on a
// new flow), and forgets it. Ask it when the stack reports a flow closed.
func (f *Flows) TakeMoved(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.movedNames[name]
	delete(f.movedNames, name)
	return ok
}

// PeerGone lets go of every relayed flow held by a member that died (its
// WebSockets died with it; its browsers reconnect elsewhere, so the
// calls on them wait for their new flow, see holderMoved) and forgets the
// dialogs it relayed here.
func (f *Flows) PeerGone(id string) {
	f.mu.Lock()
	var rs []*relayFlow
	for k, r := range f.relays {
		if k.holder == id {
			rs = append(rs, r)
		}
	}
	f.mu.Unlock()
	for _, r := range rs {
		f.holderMoved(r.key)
	}
	f.mu.Lock()
	for _, h := range f.held {
		if h.users[id] {
			delete(h.users, id)
			for cid, u := range h.calls {
				if u == id {
					delete(h.calls, cid)
				}
			}
			if len(h.users) == 0 {
				f.dropHeld(h)
			}
		}
	}
	f.mu.Unlock()
}

// Relayed returns the number of peers' flows this process uses and of its
// own flows peers use (tests, metrics).
func (f *Flows) Relayed() (using, held int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.relays), len(f.held)
}

// namedConn is a net.Conn that reports remote as its peer's address (the
// relayed flow's name) and local as its own (the WebSocket listener's).
type namedConn struct {
	net.Conn
	local, remote net.Addr
}

func (c namedConn) LocalAddr() net.Addr  { return c.local }
func (c namedConn) RemoteAddr() net.Addr { return c.remote }

// callIDOf returns the Call-ID (or compact "i") header's value of a SIP
// message, read without parsing it; "" when there is none in its header.
func callIDOf(msg []byte) string {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		line := msg
		if i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return "" // end of the header
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:c])
		if bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")) {
			return string(bytes.TrimSpace(line[c+1:]))
		}
	}
	return ""
}

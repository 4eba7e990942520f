package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/sipws"
	"github.com/strait-sbc/strait/controlplane/state"
)

// A browser's WebSocket is held by the control plane it connected to (its
// "holder"); requests toward it may arise on another one: the PBX's
// INVITE reached another member, or a call taken over from a dead member
// whose browser reconnected elsewhere. Flows carries the SIP messages of
// such a dialog between the two, untouched, over the store's
// publish/subscribe (channel "flows/ID"):
//
//   - On the member that has the dialog (the "user"), the holder's flow is
//     one more WebSocket flow of its SIP stack (sipws.Listener.Attach): an
//     in-memory connection named by an address of the discard prefix
//     100::/64 (RFC 6666; never a real peer's), whose far end publishes
//     what the stack writes and writes what the holder publishes. The
//     user's stack runs its transactions end to end with the browser
//     (retransmissions, CANCEL, ACK, responses all as on its own
//     connection).
//   - On the holder, a message from a user is written on the browser's
//     WebSocket as is, and the Call-ID it carries is remembered for that
//     flow; every message the browser sends with such a Call-ID (its
//     responses and its requests in the dialog) is diverted to the user
//     before the holder's own stack parses it (sipnet.Divert).
//
// The holder adds no Via and no Record-Route: it is no SIP hop, a
// connection relay like an L4 balancer, so nothing changes for the
// browser or for the dialog when it is relayed. Redis pub/sub delivers a
// publisher's messages in order; each direction of a flow has one
// publisher at a time (the user's far-end reader, the holder's read
// goroutine of the WebSocket), so SIP over the relay keeps its order, as
// RFC 7118 assumes of a WebSocket. Why not SIP to the holder's internal
// address (Path, RFC 3327, as Kamailio edge proxies do)? It needs an
// address per member reachable by every member, a stateful proxy hop on
// the holder (Via, Record-Route, CANCEL, hop-by-hop ACK), and a trust rule
// for SIP from peers; the store is already shared and trusted with every
// call, and the relay keeps the user's transactions end to end.
//
// A flow ends for the user when the holder reports the WebSocket closed
// (the user's stack then sees its flow close: calls on it end as with a
// browser of its own), when the holder dies (PeerGone), or when the user
// closes its end (idle: nothing registered or in a call on it, see
// sipws.Listener.CloseIdle), which it tells the holder.

// Operations between the user and the holder of a flow.
const (
	opOut     = "out"     // user to holder: a message for the browser
	opIn      = "in"      // holder to user: a message from the browser
	opClosed  = "closed"  // holder to user: the WebSocket closed
	opUnrelay = "unrelay" // user to holder: the user's end closed
	opClaim   = "claim"   // user to holder: the dialog (Call-ID in Data) is the user's
)

// Bounds of the relay.
const (
	// relayQueue is how many messages may wait for one flow's writer; a
	// browser or stack that falls that far behind loses messages (SIP's
	// own timers recover, as on a congested connection).
	relayQueue = 256
	// relayPublishTimeout bounds one publish (the next message waits for
	// it).
	relayPublishTimeout = time.Second
	// relaySetupTimeout bounds the in-memory WebSocket handshake.
	relaySetupTimeout = 2 * time.Second
	// maxDialogsPerFlow bounds the Call-IDs a holder remembers for one
	// flow; past it the oldest are forgotten (a WebSocket carries a
	// handful of dialogs at once).
	maxDialogsPerFlow = 1024
)

// flowMsg is one message between the user and the holder of a flow.
type flowMsg struct {
	Op   string `json:"op"`
	From string `json:"from"`
	Flow string `json:"flow"` // as its holder names it (the browser's address there)
	Data []byte `json:"data,omitempty"`
}

// FlowsConfig configures Flows.
type FlowsConfig struct {
	// Member is this control plane's membership. Required.
	Member *Member
	// Stack is the SIP stack; WS its WebSocket listener. Required.
	Stack *sipnet.Stack
	WS    *sipws.Listener
	// OnRelay, when set, counts each message relayed by direction
	// ("out": toward a browser, "in": from one; "publish": a message the
	// store did not take) and result ("ok", "dropped").
	OnRelay func(direction, result string)
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Flows relays dialogs over WebSockets between control planes. It is safe
// for concurrent use.
type Flows struct {
	// Frozen after NewFlows.
	cfg    FlowsConfig
	log    *slog.Logger
	st     state.Store
	self   string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	nheld atomic.Int32 // len(held), read by divert without mu
	outq  chan outMsg  // messages for publisher

	mu     sync.Mutex // guards the fields below
	held   map[string]*heldFlow
	relays map[relayKey]*relayFlow
	next   uint32
	closed bool
}

// heldFlow is, on the holder, a browser flow some users send through.
type heldFlow struct {
	flow  string
	out   chan []byte   // messages for the browser; its writer goroutine drains it
	done  chan struct{} // closed when the flow is no longer relayed
	calls map[string]string
	order []string        // Call-IDs in calls, oldest first (for the bound)
	users map[string]bool // members that sent through it
}

type relayKey struct{ holder, flow string }

// relayFlow is, on the user, a peer's browser flow as one of its own.
type relayFlow struct {
	key   relayKey
	name  string // the flow's name in this process (a 100::/64 address)
	far   net.Conn
	in    chan []byte   // messages from the browser for this stack
	ready chan struct{} // closed once this stack holds the flow (or setup failed)
	err   error         // the setup's, read after ready
	// byHolder is set when the holder ended the flow (no unrelay to send).
	byHolder atomic.Bool
	claimed  sync.Map // Call-IDs claimed at the holder (Flow)
}

// NewFlows subscribes to this member's flow channel and serves it until
// Close, and diverts the messages of relayed dialogs from the stack.
func NewFlows(ctx context.Context, cfg FlowsConfig) (*Flows, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	sctx, cancel := context.WithCancel(context.Background())
	f := &Flows{cfg: cfg, log: cfg.Log, st: cfg.Member.cfg.Store, self: cfg.Member.ID(), cancel: cancel,
		held: map[string]*heldFlow{}, relays: map[relayKey]*relayFlow{}, outq: make(chan outMsg, relayQueue)}
	in, err := f.st.Subscribe(sctx, flowChannel(f.self))
	if err != nil {
		cancel()
		return nil, err
	}
	f.wg.Add(2)
	go f.serve(in)
	go f.publisher(sctx)
	cfg.Stack.SetDivert(f.divert)
	return f, nil
}

func flowChannel(id string) string { return "flows/" + id }

// Close stops relaying: the peers' flows this process used are closed
// (their calls here end as with a closed WebSocket), the flows it held
// for peers are forgotten.
func (f *Flows) Close() {
	f.cfg.Stack.SetDivert(nil)
	f.cancel()
	f.mu.Lock()
	f.closed = true
	relays := make([]*relayFlow, 0, len(f.relays))
	for _, r := range f.relays {
		relays = append(relays, r)
	}
	for flow, h := range f.held {
		close(h.done)
		delete(f.held, flow)
	}
	f.nheld.Store(0)
	f.mu.Unlock()
	for _, r := range relays {
		r.byHolder.Store(true) // the holder forgets on its own (the unrelay would not be sent now)
		r.far.Close()
	}
	f.wg.Wait()
}

func (f *Flows) count(direction, result string) {
	if f.cfg.OnRelay != nil {
		f.cfg.OnRelay(direction, result)
	}
}

// errRelayFull: the publisher's queue is full (the store does not keep
// up); the message is dropped.
var errRelayFull = errors.New("cluster: relay queue full")

// publish queues m for the member to. Every message goes out through one
// publisher goroutine, in the order queued: each flow's messages keep
// their order (Redis delivers one connection's publications in order),
// and the relay holds one store connection at a time whatever the number
// of flows. It never blocks.
func (f *Flows) publish(to string, m flowMsg) error {
	m.From = f.self
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	select {
	case f.outq <- outMsg{to: to, b: b}:
		return nil
	default:
		return errRelayFull
	}
}

type outMsg struct {
	to string
	b  []byte
}

// publisher is the goroutine that publishes what publish queued.
func (f *Flows) publisher(ctx context.Context) {
	defer f.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-f.outq:
			pctx, cancel := context.WithTimeout(ctx, relayPublishTimeout)
			if err := f.st.Publish(pctx, flowChannel(o.to), o.b); err != nil {
				f.count("publish", "dropped")
				f.log.Warn("cluster: a relayed message not published", "to", o.to, "err", err)
			}
			cancel()
		}
	}
}

// serve dispatches the messages of this member's channel, in order.
func (f *Flows) serve(in <-chan []byte) {
	defer f.wg.Done()
	for b := range in {
		var m flowMsg
		if json.Unmarshal(b, &m) != nil || CheckID(m.From) != nil || m.From == f.self || m.Flow == "" {
			continue
		}
		switch m.Op {
		case opOut:
			f.toBrowser(m, true)
		case opClaim:
			f.claim(m)
		case opIn:
			f.fromBrowser(m)
		case opClosed:
			f.holderClosed(relayKey{holder: m.From, flow: m.Flow})
		case opUnrelay:
			f.unrelay(m.From, m.Flow)
		}
	}
}

// --- the holder's side ---

// toBrowser writes a user's message on the browser's WebSocket (unless
// write is false), and remembers its dialog's Call-ID for that user.
func (f *Flows) toBrowser(m flowMsg, write bool) {
	if !f.cfg.WS.Open(m.Flow) {
		f.count(opOut, "dropped")
		f.publish(m.From, flowMsg{Op: opClosed, Flow: m.Flow})
		return
	}
	cid := callIDOf(m.Data)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	h := f.held[m.Flow]
	if h == nil {
		h = &heldFlow{flow: m.Flow, out: make(chan []byte, relayQueue), done: make(chan struct{}), calls: map[string]string{},
			users: map[string]bool{}}
		f.held[m.Flow] = h
		f.nheld.Store(int32(len(f.held)))
		f.wg.Add(1)
		go f.writeBrowser(h)
	}
	h.users[m.From] = true
	if cid != "" {
		if _, known := h.calls[cid]; !known {
			h.order = append(h.order, cid)
			if len(h.order) > maxDialogsPerFlow {
				delete(h.calls, h.order[0])
				h.order = h.order[1:]
			}
		}
		h.calls[cid] = m.From
	}
	f.mu.Unlock()
	if !write {
		return
	}
	select {
	case h.out <- m.Data:
	default:
		f.count(opOut, "dropped")
		f.log.Warn("cluster: relay toward a browser is full; message dropped", "flow", m.Flow, "from", m.From)
	}
}

// claim remembers a user's dialog on a flow before the user sent anything
// in it (a call it carried on after a restart or a takeover), so that
// the browser's requests in it (a BYE) reach the user.
func (f *Flows) claim(m flowMsg) {
	if !f.cfg.WS.Open(m.Flow) {
		f.publish(m.From, flowMsg{Op: opClosed, Flow: m.Flow})
		return
	}
	f.toBrowser(flowMsg{Op: opOut, From: m.From, Flow: m.Flow, Data: []byte("Call-ID: " + string(m.Data) + "\r\n\r\n")}, false)
}

// writeBrowser is a held flow's writer goroutine.
func (f *Flows) writeBrowser(h *heldFlow) {
	defer f.wg.Done()
	for {
		select {
		case <-h.done:
			return
		case b := <-h.out:
			if err := f.cfg.Stack.WriteFlow(h.flow, b); err != nil {
				f.count(opOut, "dropped")
				f.log.Debug("cluster: relayed message not written to the browser", "flow", h.flow, "err", err)
				continue
			}
			f.count(opOut, "ok")
		}
	}
}

// divert takes the browser's messages of dialogs a user has on this flow
// (sipnet.Divert).
func (f *Flows) divert(flow string, data []byte) bool {
	if f.nheld.Load() == 0 {
		return false
	}
	cid := callIDOf(data)
	if cid == "" {
		return false
	}
	f.mu.Lock()
	var user string
	if h := f.held[flow]; h != nil {
		user = h.calls[cid]
	}
	f.mu.Unlock()
	if user == "" {
		return false
	}
	if err := f.publish(user, flowMsg{Op: opIn, Flow: flow, Data: data}); err != nil {
		f.count(opIn, "dropped")
		f.log.Warn("cluster: a browser's message for a peer's dialog not passed on", "flow", flow, "to", user, "err", err)
	} else {
		f.count(opIn, "ok")
	}
	return true
}

// unrelay forgets what a user sent through a flow.
func (f *Flows) unrelay(user, flow string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.held[flow]
	if h == nil {
		return
	}
	delete(h.users, user)
	for cid, u := range h.calls {
		if u == user {
			delete(h.calls, cid)
		}
	}
	if len(h.users) == 0 {
		f.dropHeld(h)
	}
}

// dropHeld stops relaying h. f.mu held.
func (f *Flows) dropHeld(h *heldFlow) {
	close(h.done)
	delete(f.held, h.flow)
	f.nheld.Store(int32(len(f.held)))
}

// LocalClosed tells the users of a flow this process held that its
// WebSocket closed. Call it for every flow that closes.
func (f *Flows) LocalClosed(flow string) {
	f.mu.Lock()
	h := f.held[flow]
	var users []string
	if h != nil {
		for u := range h.users {
			users = append(users, u)
		}
		f.dropHeld(h)
	}
	f.mu.Unlock()
	for _, u := range users {
		if err := f.publish(u, flowMsg{Op: opClosed, Flow: flow}); err != nil {
			f.log.Warn("cluster: a peer not told that a browser's WebSocket closed", "flow", flow, "to", u, "err", err)
		}
	}
}

// --- the user's side ---

// ErrHolderGone is returned for a flow whose holder holds no live lease.
var ErrHolderGone = errors.New("cluster: the control plane holding the flow is gone")

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
	r, err := f.relayFor(relayKey{holder: m.From, flow: m.Flow})
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

// PeerGone closes every relayed flow held by a member that died (its
// WebSockets died with it) and forgets the dialogs it relayed here.
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
		f.holderClosed(r.key)
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

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

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
// browser of its own), or when the user closes its end (idle: nothing
// registered or in a call on it, see sipws.Listener.CloseIdle), which it
// tells the holder. When the holder hands over (SIGUSR2: HandOver tells
// its users "moved") or dies (PeerGone), the browser reconnects and
// registers again, maybe on another member: the user lets the flow go
// without ending the calls on it (TakeMoved, b2bua's Engine.FlowMoved),
// which wait for the browser's new registration and go on over its new
// flow, and never relays through the old flow again.

// Operations between the user and the holder of a flow.
const (
	opOut     = "out"     // user to holder: a message for the browser
	opIn      = "in"      // holder to user: a message from the browser
	opClosed  = "closed"  // holder to user: the WebSocket closed
	opUnrelay = "unrelay" // user to holder: the user's end closed
	opClaim   = "claim"   // user to holder: the dialog (Call-ID in Data) is the user's
	opMoved   = "moved"   // holder to user: the holder hands over (SIGUSR2); the browser reconnects elsewhere
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
	// movedMemory is how long a user remembers a flow whose holder handed
	// it over (or died): long enough that nothing is relayed to it again
	// while its calls wait for the browser (b2bua's takeover grace).
	movedMemory = 2 * time.Minute
	// maxMoved bounds the flows remembered as moved.
	maxMoved = 4096
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
	// OnMoved, when set, is told of a browser flow a peer held that is
	// gone for good (its holder handed over or died): the registrations
	// on it are flow-failed until the browser registers again.
	OnMoved func(holder, flow string)
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
	// moved are the peers' flows whose holder handed them over (or died),
	// by when that was learnt: never relayed through again (movedMemory).
	moved map[relayKey]time.Time
	// movedNames are this stack's names of relayed flows closed because
	// their holder moved them, until the stack reports them closed
	// (TakeMoved).
	movedNames map[string]time.Time
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
		held: map[string]*heldFlow{}, relays: map[relayKey]*relayFlow{}, outq: make(chan outMsg, relayQueue),
		moved: map[relayKey]time.Time{}, movedNames: map[string]time.Time{}}
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
	// flushed, when set, marks no message: the publisher closes it once
	// everything queued before it went out (HandOver).
	flushed chan struct{}
}

// publisher is the goroutine that publishes what publish queued.
func (f *Flows) publisher(ctx context.Context) {
	defer f.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-f.outq:
			if o.flushed != nil {
				close(o.flushed)
				continue
			}
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
		case opMoved:
			f.holderMoved(relayKey{holder: m.From, flow: m.Flow})
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

// HandOver tells the users of every flow this process holds that the
// browser's WebSocket goes to another process (SIGUSR2: the browser
// reconnects and registers again, maybe on another member): their calls
// on it wait for the browser's new flow instead of ending. It waits,
// bounded by ctx, until what was queued before went out (a browser's
// last messages keep their order before the notice). Call it before the
// WebSockets close, then Close.
func (f *Flows) HandOver(ctx context.Context) {
	f.mu.Lock()
	type note struct{ user, flow string }
	var notes []note
	for flow, h := range f.held {
		for u := range h.users {
			notes = append(notes, note{u, flow})
		}
	}
	f.mu.Unlock()
	for _, n := range notes {
		if err := f.publish(n.user, flowMsg{Op: opMoved, Flow: n.flow}); err != nil {
			f.log.Warn("cluster: a peer not told that a browser's WebSocket is handed over", "flow", n.flow, "to", n.user, "err", err)
		}
	}
	flushed := make(chan struct{})
	select {
	case f.outq <- outMsg{flushed: flushed}:
	case <-ctx.Done():
		return
	}
	select {
	case <-flushed:
	case <-ctx.Done():
		f.log.Warn("cluster: peers maybe not told of the handover in time", "flows", len(notes))
	}
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

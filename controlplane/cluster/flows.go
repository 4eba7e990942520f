package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
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
// such a dialog between the two, untouched, through the store's queue
// "flows/ID" of the receiving member (a Redis Stream, see "Why a queue"
// below):
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
// browser or for the dialog when it is relayed. A queue keeps the order
// of what one process pushes, and each process pushes from one goroutine
// (publisher), so SIP over the relay keeps its order, as RFC 7118 assumes
// of a WebSocket.
//
// Why a queue and not pub/sub: SIP over a WebSocket is not retransmitted
// (RFC 3261 section 17.1.1.2: a reliable transport's requests are sent
// once), so the hop between members must lose nothing. Redis pub/sub
// keeps nothing for a subscriber that is reconnecting: a request relayed
// then was lost and its transaction timed out. Each member reads its own
// stream (XREAD from the last entry it read), so what was pushed while its
// connection was down comes once it is back, once and in order. Chosen
// over acknowledgements with retries (a second message per message, a
// retry timer and a duplicate filter on every flow) and over PUBLISH's
// receiver count (0 tells a subscription being made again, not a
// connection Redis has not seen die yet). Bounds: relayInboxLen messages
// and relayInboxTTL per member's stream in Redis; a message older than
// relayMaxAge (Timer B/F: every transaction it belongs to is over) is
// dropped. A push that failed is tried again (relayPushAttempts); each
// message carries its sender's run and sequence number, and the receiver
// drops one it has seen (a push that Redis took but whose answer was
// lost, then tried again), so a message is never delivered twice. Why not SIP to the holder's internal
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
	// relayInboxLen bounds a member's queue in the store: messages
	// pushed while it does not read (its connection to Redis is down)
	// wait there, the oldest dropped past it.
	relayInboxLen = 4096
	// relayInboxTTL: a member's queue disappears this long after the last
	// push to it (a member that is gone).
	relayInboxTTL = time.Minute
	// relayMaxAge is the age past which a relayed message is dropped:
	// 64*T1, SIP's Timer B and F (RFC 3261 section 17.1): every
	// transaction it belongs to is over.
	relayMaxAge = 32 * time.Second
	// relayPushAttempts bounds the tries of one push, relayPushPause
	// apart (the next messages wait: the order is kept).
	relayPushAttempts = 3
	relayPushPause    = 200 * time.Millisecond
	// maxSenders bounds the senders whose last sequence number a member
	// remembers (the members: a handful).
	maxSenders = 1024
)

// flowMsg is one message between the user and the holder of a flow.
type flowMsg struct {
	Op   string `json:"op"`
	From string `json:"from"`
	Flow string `json:"flow"` // as its holder names it (the browser's address there)
	Data []byte `json:"data,omitempty"`
	// Run names the sending Flows (random, per process run) and Seq
	// numbers its messages from 1 in the order pushed: the receiver drops
	// what it has seen. At is when it was queued (Unix ms).
	Run string `json:"run,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	At  int64  `json:"at,omitempty"`
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
	// store did not take; "queue": one read from this member's queue) and
	// result ("ok", "dropped"; "duplicate", "stale" for "queue").
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
	run    string // this run's name in its messages (flowMsg.Run)
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
	f := &Flows{cfg: cfg, log: cfg.Log, st: cfg.Member.cfg.Store, self: cfg.Member.ID(), run: rand.Text(), cancel: cancel,
		held: map[string]*heldFlow{}, relays: map[relayKey]*relayFlow{}, outq: make(chan outMsg, relayQueue),
		moved: map[relayKey]time.Time{}, movedNames: map[string]time.Time{}}
	in, err := f.st.Receive(sctx, flowChannel(f.self))
	if err != nil {
		cancel()
		return nil, err
	}
	f.wg.Add(2)
	go f.serve(sctx, in)
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
// their order (a queue keeps the order of one process's pushes), and the
// relay holds one store connection at a time whatever the number of
// flows. It never blocks.
func (f *Flows) publish(to string, m flowMsg) error {
	m.From, m.Run, m.At = f.self, f.run, time.Now().UnixMilli()
	m.Data = bytes.Clone(m.Data) // the caller's buffer is reused (sipnet.Divert)
	select {
	case f.outq <- outMsg{to: to, m: m}:
		return nil
	default:
		return errRelayFull
	}
}

type outMsg struct {
	to string
	m  flowMsg
	// flushed, when set, marks no message: the publisher closes it once
	// everything queued before it went out (HandOver).
	flushed chan struct{}
}

// publisher is the goroutine that pushes what publish queued, numbering
// the messages in that order.
func (f *Flows) publisher(ctx context.Context) {
	defer f.wg.Done()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-f.outq:
			if o.flushed != nil {
				close(o.flushed)
				continue
			}
			seq++
			o.m.Seq = seq
			b, err := json.Marshal(o.m)
			if err != nil {
				continue
			}
			for try := 1; ; try++ {
				pctx, cancel := context.WithTimeout(ctx, relayPublishTimeout)
				err = f.st.Push(pctx, flowChannel(o.to), b, relayInboxLen, relayInboxTTL)
				cancel()
				if err == nil || try == relayPushAttempts || ctx.Err() != nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(relayPushPause):
				}
			}
			if err != nil {
				f.count("publish", "dropped")
				f.log.Warn("cluster: a relayed message not passed to the store", "to", o.to, "err", err)
			}
		}
	}
}

// lastSeen is, on a receiver, the last message seen from a sender.
type lastSeen struct {
	run string
	seq uint64
}

// serve dispatches the messages of this member's queue, in order, each
// once and while it is young enough (relayMaxAge).
func (f *Flows) serve(ctx context.Context, in <-chan []byte) {
	defer f.wg.Done()
	seen := map[string]lastSeen{}
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return
		case b = <-in:
			if b == nil {
				return // the queue ended
			}
		}
		var m flowMsg
		if json.Unmarshal(b, &m) != nil || CheckID(m.From) != nil || m.From == f.self || m.Flow == "" {
			continue
		}
		if last, ok := seen[m.From]; ok && last.run == m.Run && m.Seq <= last.seq {
			f.count("queue", "duplicate")
			continue
		}
		if len(seen) >= maxSenders {
			clear(seen)
		}
		seen[m.From] = lastSeen{run: m.Run, seq: m.Seq}
		if age := time.Since(time.UnixMilli(m.At)); m.At != 0 && age > relayMaxAge {
			f.count("queue", "stale")
			f.log.Warn("cluster: a relayed message came too late; dropped", "from", m.From, "op", m.Op, "age", age)
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

package messaging

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strait-sbc/strait/controlplane/state"
)

// Offline is the state store kind of the messages kept for users who were
// offline: one record per message, keyed recipient/time/id.
const Offline state.Kind = "offline_messages"

// The mailbox's limits, as a store-and-forward server keeps them (ejabberd
// caps each user's offline queue and refuses past it; Kamailio's msilo
// expires what waited too long).
const (
	// DefaultMaxPerUser is how many messages wait for one user; past it
	// new ones are refused (the sender is told), not the oldest dropped.
	DefaultMaxPerUser = 100
	// DefaultMaxTotal bounds the whole mailbox (4 KiB each at most: 40
	// MiB), so that many users' queues cannot fill the store.
	DefaultMaxTotal = 10000
	// DefaultMaxPerSender is the share of the whole mailbox one sender's
	// waiting messages may take, 5% (MaxPerSender's default is MaxTotal/20),
	// so that one user within its message rate (an hour at 60 a minute
	// fills 3 600) cannot fill the mailbox for everyone: it takes twenty
	// senders at their cap to fill it.
	DefaultMaxPerSender = DefaultMaxTotal / 20
	// DefaultMaxAge is how long a message waits before it is dropped
	// (counted as expired).
	DefaultMaxAge = 7 * 24 * time.Hour
)

// sweepInterval paces the removal of messages past MaxAge.
const sweepInterval = 10 * time.Minute

// mailboxChannel is the bus channel on which control planes sharing a
// store tell each other what they stored and removed, so that each one's
// index knows who has messages waiting.
const mailboxChannel = "strait.mailbox"

// Errors of Mailbox.Put.
var (
	// ErrMailboxFull: the recipient's queue (or the whole mailbox) is at
	// its limit.
	ErrMailboxFull = errors.New("messaging: mailbox full")
	// ErrSenderShare: the sender's waiting messages take its whole share
	// of the mailbox (MaxPerSender); it wraps ErrMailboxFull.
	ErrSenderShare = fmt.Errorf("%w: the sender's share is used up", ErrMailboxFull)
	// ErrTaken: the message was delivered live meanwhile (a listener on
	// another control plane claimed it first): it is not kept, and its
	// sender may say it was delivered.
	ErrTaken = errors.New("messaging: delivered live, not kept")
	// ErrUnknownUser: the recipient is not a user messages are kept for.
	ErrUnknownUser = errors.New("messaging: no such user to keep messages for")
)

// MailboxConfig configures a Mailbox.
type MailboxConfig struct {
	// Store keeps the messages (the embedded store by default). Required.
	Store state.Store
	// Known says whether messages are kept for a user (the configured
	// users and the address book's); nil keeps them for nobody.
	Known func(user string) bool
	// MaxPerUser, MaxTotal and MaxAge are the limits; 0 is the default.
	MaxPerUser, MaxTotal int
	MaxAge               time.Duration
	// MaxPerSender bounds the messages one sender has waiting, in all
	// recipients' queues; 0 is MaxTotal/20 (DefaultMaxPerSender). More
	// than MaxTotal is an error.
	MaxPerSender int
	// Live, when set, is this process's Hub: a message kept for a user
	// who has a listener here (one that opened while the sender tried,
	// or whose control plane heard of the message after the mailbox
	// claimed it) is handed to the listeners at once (handover.go).
	Live *Hub
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Mailbox keeps instant messages for users who have neither a registered
// browser nor an API listener, until they come online: registering a
// browser or opening the message event stream (the callers hand the
// messages over and report each one delivered). It is safe for concurrent
// use.
//
// An index of the waiting messages (recipient, key, time) is kept in
// memory, loaded from the store at start and kept current between control
// planes sharing the store through its bus, so that asking whether a user
// has messages waiting costs no store access.
type Mailbox struct {
	cfg    MailboxConfig   // frozen
	origin string          // frozen: this process, on the bus
	ctx    context.Context // frozen: ends at Close
	cancel context.CancelFunc
	done   chan struct{}
	events *prometheus.CounterVec
	gauge  prometheus.GaugeFunc

	wg sync.WaitGroup // hand-overs to listeners in progress

	mu         sync.Mutex           // guards the fields below
	index      map[string][]waiting // by recipient, oldest first
	total      int
	senders    map[string]int  // waiting messages by sender
	delivering map[string]bool // recipients whose messages are being handed over
	handing    map[string]bool // recipients with a hand-over to listeners running; true: run again
	closed     bool            // Close was called: no more hand-overs
	// dropped, while a catch-up reads the store (resync), collects the
	// keys removed from the index meanwhile, so that a record the read
	// still saw is not put back.
	dropped map[string]bool
	// gen is the store's generation last seen (state.Generation): a
	// catch-up that finds another one counts what went missing as lost
	// with the store, not removed by a peer.
	gen string
}

// waiting is one message in the index.
type waiting struct {
	key  string
	at   time.Time
	from string
}

// busNote is what a control plane tells the others about a change.
type busNote struct {
	Origin  string    `json:"o"`
	User    string    `json:"u"`
	Key     string    `json:"k"`
	Time    time.Time `json:"t"`
	From    string    `json:"f,omitempty"`
	Removed bool      `json:"r,omitempty"`
}

// NewMailbox loads the waiting messages' index and starts the mailbox;
// Close stops it.
func NewMailbox(ctx context.Context, cfg MailboxConfig) (*Mailbox, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.MaxPerUser = cmp.Or(cfg.MaxPerUser, DefaultMaxPerUser)
	cfg.MaxTotal = cmp.Or(cfg.MaxTotal, DefaultMaxTotal)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	if cfg.MaxPerSender == 0 {
		cfg.MaxPerSender = max(1, cfg.MaxTotal/20)
	}
	if cfg.MaxPerSender < 0 || cfg.MaxPerSender > cfg.MaxTotal {
		return nil, fmt.Errorf("messaging: %d messages per sender: want 1 to the total, %d", cfg.MaxPerSender, cfg.MaxTotal)
	}
	bctx, cancel := context.WithCancel(context.Background())
	b := &Mailbox{cfg: cfg, origin: NewID(), ctx: bctx, cancel: cancel, done: make(chan struct{}), index: map[string][]waiting{}, senders: map[string]int{},
		delivering: map[string]bool{}, handing: map[string]bool{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_messages_offline_total",
			Help: "Instant messages for offline users, by event: stored, delivered, expired, refused_full (the recipient's queue or the whole mailbox), refused_sender (the sender's share of the mailbox), refused_unknown, taken_live (delivered live on another control plane meanwhile: not kept), failed (the store refused), lost (went with a state store that came back empty)."},
			[]string{"event"})}
	b.gauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_messages_offline_waiting",
		Help: "Instant messages waiting for offline users (this control plane's index)."},
		func() float64 { b.mu.Lock(); defer b.mu.Unlock(); return float64(b.total) })
	for _, e := range []string{"stored", "delivered", "expired", "refused_full", "refused_sender", "refused_unknown", "taken_live", "failed", "lost"} {
		b.events.WithLabelValues(e)
	}
	bus, err := cfg.Store.Subscribe(bctx, mailboxChannel)
	if err != nil {
		cfg.Log.Warn("mailbox: bus subscription failed; retrying", "err", err)
		bus = nil
	}
	b.gen, _, _ = state.Generation(ctx, cfg.Store) // best effort: "" never counts as a loss
	recs, err := cfg.Store.Load(ctx, Offline)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("messaging: loading the offline messages: %w", err)
	}
	for key, v := range recs {
		var m Message
		user, ok := userOfKey(key)
		if !ok || json.Unmarshal(v, &m) != nil || m.To != user {
			cfg.Store.Apply(ctx, []state.Change{{Kind: Offline, Key: key}})
			continue
		}
		b.add(user, waiting{key: key, at: m.Time, from: m.From})
	}
	go b.run(bctx, bus)
	return b, nil
}

// Collectors are the mailbox's metrics.
func (b *Mailbox) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.events, b.gauge}
}

// Count returns how many times event happened (tests).
func (b *Mailbox) Count(event string) float64 {
	var m dto.Metric
	b.events.WithLabelValues(event).Write(&m)
	return m.GetCounter().GetValue()
}

// Close stops the mailbox; what it keeps stays in the store.
func (b *Mailbox) Close() {
	b.cancel()
	<-b.done
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}

// key makes a record key: the recipient (path-escaped, so that it holds
// no '/'), the time, the message id.
func key(m Message) string {
	return url.PathEscape(m.To) + "/" + fmt.Sprintf("%020d", m.Time.UnixNano()) + "/" + m.ID
}

func userOfKey(k string) (string, bool) {
	esc, _, ok := strings.Cut(k, "/")
	if !ok {
		return "", false
	}
	u, err := url.PathUnescape(esc)
	return u, err == nil && u != ""
}

// add puts w in user's index, in time order, and reports whether it was
// not there yet. b.mu not held.
func (b *Mailbox) add(user string, w waiting) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.index[user]
	if slices.ContainsFunc(q, func(x waiting) bool { return x.key == w.key }) {
		return false
	}
	i, _ := slices.BinarySearchFunc(q, w, func(a, b waiting) int { return cmp.Or(a.at.Compare(b.at), strings.Compare(a.key, b.key)) })
	b.index[user] = slices.Insert(q, i, w)
	b.total++
	b.senders[w.from]++
	return true
}

// drop removes key from user's index and reports whether it was there.
func (b *Mailbox) drop(user, key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.index[user]
	i := slices.IndexFunc(q, func(x waiting) bool { return x.key == key })
	if i < 0 {
		return false
	}
	if b.dropped != nil {
		b.dropped[key] = true
	}
	if b.senders[q[i].from]--; b.senders[q[i].from] <= 0 {
		delete(b.senders, q[i].from)
	}
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(b.index, user)
	} else {
		b.index[user] = q
	}
	b.total--
	return true
}

func (b *Mailbox) note(ctx context.Context, n busNote) {
	n.Origin = b.origin
	raw, _ := json.Marshal(n)
	if err := b.cfg.Store.Publish(ctx, mailboxChannel, raw); err != nil {
		b.cfg.Log.Debug("mailbox: bus note not sent", "err", err)
	}
}

// run applies the other control planes' notes and sweeps old messages.
// When the bus subscription was lost (the store's gap mark, or the bus
// gone and subscribed to again), the notes published meanwhile are lost:
// the index catches up from the store (resync).
func (b *Mailbox) run(ctx context.Context, bus <-chan []byte) {
	defer close(b.done)
	b.sweep(ctx)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var retry <-chan time.Time // set while a subscription or a catch-up waits to be tried again
	if bus == nil {
		retry = time.After(resubscribe)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.sweep(ctx)
		case <-retry:
			retry = nil
			if bus == nil {
				ch, err := b.cfg.Store.Subscribe(ctx, mailboxChannel)
				if err != nil {
					b.cfg.Log.Debug("mailbox: bus subscription failed; retrying", "err", err)
					retry = time.After(resubscribe)
					continue
				}
				bus = ch
			}
			retry = b.catchUp(ctx)
		case raw, ok := <-bus:
			if !ok {
				bus = nil // the bus is gone: subscribe again, then catch up
				retry = time.After(resubscribe)
				continue
			}
			if raw == nil {
				retry = b.catchUp(ctx)
				continue
			}
			var n busNote
			if json.Unmarshal(raw, &n) != nil || n.Origin == b.origin || n.User == "" {
				continue
			}
			if n.Removed {
				b.drop(n.User, n.Key)
			} else {
				b.add(n.User, waiting{key: n.Key, at: n.Time, from: n.From})
				b.handOver(n.User)
			}
		}
	}
}

// catchUp runs resync and returns nil, or when the store did not answer,
// when to try again.
func (b *Mailbox) catchUp(ctx context.Context) <-chan time.Time {
	lctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	added, removed, err := b.resync(lctx)
	cancel()
	if err != nil {
		b.cfg.Log.Warn("mailbox: offline messages not read again after the bus subscription was lost; retrying", "err", err)
		return time.After(resubscribe)
	}
	b.cfg.Log.Info("mailbox: offline messages read again after the bus subscription was lost", "added", added, "removed", removed)
	return nil
}

// resyncTimeout bounds one catch-up's read of the store.
const resyncTimeout = 10 * time.Second

// resync makes the index what the store holds after the notes of other
// control planes were lost (a bus gap): messages they kept meanwhile are
// added (and handed to listeners here), messages they removed meanwhile
// (delivered, expired) are dropped. Changes this process makes while the
// store is read stay: a message kept since is in the index, not yet in the
// read; a message removed since is not put back. When the store's
// generation changed meanwhile (it came back empty), the messages missing
// went with it: they are counted as lost (as StoreLost does, whichever of
// the two runs first). It returns how many messages it added and removed.
func (b *Mailbox) resync(ctx context.Context) (added, removed int, err error) {
	gen, genOK, err := state.Generation(ctx, b.cfg.Store)
	if err != nil {
		return 0, 0, err
	}
	type entry struct{ user, key string }
	var before []entry
	b.mu.Lock()
	for u, q := range b.index {
		for _, w := range q {
			before = append(before, entry{u, w.key})
		}
	}
	b.dropped = map[string]bool{}
	b.mu.Unlock()
	recs, err := b.cfg.Store.Load(ctx, Offline)
	b.mu.Lock()
	dropped := b.dropped
	b.dropped = nil
	b.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	b.mu.Lock()
	lost := b.gen != "" && (!genOK || gen != b.gen)
	if genOK {
		b.gen = gen
	}
	b.mu.Unlock()
	for _, e := range before {
		if _, kept := recs[e.key]; !kept && b.drop(e.user, e.key) {
			removed++
		}
	}
	if lost {
		b.events.WithLabelValues("lost").Add(float64(removed))
	}
	users := map[string]bool{}
	for k, v := range recs {
		if dropped[k] {
			continue
		}
		var m Message
		user, ok := userOfKey(k)
		if !ok || json.Unmarshal(v, &m) != nil || m.To != user {
			continue // removed by the next start (NewMailbox)
		}
		if b.add(user, waiting{key: k, at: m.Time, from: m.From}) {
			added++
			users[user] = true
		}
	}
	for u := range users {
		b.handOver(u)
	}
	return added, removed, nil
}

// sweep drops the messages that waited past MaxAge.
func (b *Mailbox) sweep(ctx context.Context) {
	cut := time.Now().Add(-b.cfg.MaxAge)
	type old struct{ user, key string }
	var dead []old
	b.mu.Lock()
	for u, q := range b.index {
		for _, w := range q {
			if w.at.Before(cut) {
				dead = append(dead, old{u, w.key})
			}
		}
	}
	b.mu.Unlock()
	for _, d := range dead {
		if err := b.cfg.Store.Apply(ctx, []state.Change{{Kind: Offline, Key: d.key}}); err != nil {
			b.cfg.Log.Warn("mailbox: expired message not removed", "user", d.user, "err", err)
			continue
		}
		if b.drop(d.user, d.key) {
			b.events.WithLabelValues("expired").Inc()
			b.note(ctx, busNote{User: d.user, Key: d.key, Removed: true})
		}
	}
}

// Put keeps m for its recipient. It fails with ErrUnknownUser for a
// recipient messages are not kept for, ErrSenderShare when m's sender has
// MaxPerSender messages waiting, ErrMailboxFull past the recipient's or
// the whole mailbox's limit, ErrTaken when m was delivered live meanwhile
// (claim.go), or the store's error; each outcome is counted.
func (b *Mailbox) Put(ctx context.Context, m Message) error {
	if b.cfg.Known == nil || !b.cfg.Known(m.To) {
		b.events.WithLabelValues("refused_unknown").Inc()
		return ErrUnknownUser
	}
	if err := b.limit(m); err != nil {
		return err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	switch ok, err := claim(ctx, b.cfg.Store, m.ID, claimStored); {
	case err != nil:
		b.events.WithLabelValues("failed").Inc()
		return fmt.Errorf("messaging: claiming a message for %s: %w", m.To, err)
	case !ok:
		b.events.WithLabelValues("taken_live").Inc()
		return ErrTaken
	}
	k := key(m)
	if err := b.cfg.Store.Apply(ctx, []state.Change{{Kind: Offline, Key: k, Value: raw}}); err != nil {
		b.events.WithLabelValues("failed").Inc()
		// A listener that hears of it late may still deliver it.
		unclaim(ctx, b.cfg.Store, m.ID, claimStored)
		return fmt.Errorf("messaging: storing a message for %s: %w", m.To, err)
	}
	b.add(m.To, waiting{key: k, at: m.Time, from: m.From})
	b.events.WithLabelValues("stored").Inc()
	b.note(ctx, busNote{User: m.To, Key: k, Time: m.Time, From: m.From})
	b.handOver(m.To)
	return nil
}

// limit applies the mailbox's limits to m (the recipient's queue and the
// whole mailbox, then the sender's share) and counts a refusal.
func (b *Mailbox) limit(m Message) error {
	b.mu.Lock()
	sender := b.senders[m.From] >= b.cfg.MaxPerSender
	full := len(b.index[m.To]) >= b.cfg.MaxPerUser || b.total >= b.cfg.MaxTotal
	b.mu.Unlock()
	switch {
	case full:
		b.events.WithLabelValues("refused_full").Inc()
		return ErrMailboxFull
	case sender:
		b.events.WithLabelValues("refused_sender").Inc()
		return ErrSenderShare
	}
	return nil
}

// Sent returns how many messages from sender wait, in all queues.
func (b *Mailbox) Sent(sender string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.senders[sender]
}

// Keeps reports whether messages are kept for user (MailboxConfig.Known).
func (b *Mailbox) Keeps(user string) bool { return b.cfg.Known != nil && b.cfg.Known(user) }

// Waiting returns how many messages wait for user.
func (b *Mailbox) Waiting(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.index[user])
}

// takeTTL bounds one hand-over's hold on a user's messages across control
// planes (a hand-over over SIP is bounded to a minute by its caller); a
// control plane that died holding it frees it this much later.
const takeTTL = 2 * time.Minute

// takeName is the lease of a hand-over of user's messages.
func takeName(user string) string { return "mailbox/" + user }

// Take returns the messages waiting for user, oldest first, and the
// function to call when the hand-over is over; meanwhile another Take of
// the same user returns nothing, on this control plane or another one
// sharing the store (two registrations at once do not both deliver): the
// hand-over holds the store's lease mailbox/USER. The messages stay kept
// until reported with Delivered.
func (b *Mailbox) Take(ctx context.Context, user string) ([]Message, func()) {
	b.mu.Lock()
	if b.delivering[user] || len(b.index[user]) == 0 {
		b.mu.Unlock()
		return nil, func() {}
	}
	b.delivering[user] = true
	keys := make([]string, len(b.index[user]))
	for i, w := range b.index[user] {
		keys[i] = w.key
	}
	b.mu.Unlock()
	release := func() {
		b.mu.Lock()
		delete(b.delivering, user)
		b.mu.Unlock()
	}
	if ok, err := b.cfg.Store.Lease(ctx, takeName(user), b.origin, takeTTL); err != nil || !ok {
		release() // another control plane is handing them over (or the store is away)
		return nil, func() {}
	}
	var once sync.Once
	done := func() {
		once.Do(func() {
			release()
			ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
			defer cancel()
			b.cfg.Store.Release(ctx, takeName(user), b.origin)
		})
	}
	var out []Message
	for _, k := range keys {
		raw, ok, err := b.cfg.Store.Get(ctx, Offline, k)
		if err != nil {
			b.cfg.Log.Warn("mailbox: message not read", "user", user, "err", err)
			break
		}
		var m Message
		if !ok || json.Unmarshal(raw, &m) != nil {
			b.drop(user, k) // removed elsewhere, or unreadable
			continue
		}
		out = append(out, m)
	}
	return out, done
}

// Delivered removes a message handed over to its recipient.
func (b *Mailbox) Delivered(ctx context.Context, m Message) error {
	k := key(m)
	if err := b.cfg.Store.Apply(ctx, []state.Change{{Kind: Offline, Key: k}}); err != nil {
		return fmt.Errorf("messaging: removing a delivered message: %w", err)
	}
	if b.drop(m.To, k) {
		b.events.WithLabelValues("delivered").Inc()
		b.note(ctx, busNote{User: m.To, Key: k, Removed: true})
	}
	return nil
}

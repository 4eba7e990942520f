// Package sipbridge carries the presence of Strait's API users to the
// upstream's presence server in trunk mode, and the upstream's presence to
// them: what an API user publishes (PUT /v1/presence) goes out as SIP
// PUBLISH (RFC 3903) with a PIDF body (RFC 3863), kept alive by refreshes
// with its entity tag and removed when the user goes offline or Strait
// stops; a user watched through the API (GET
// /v1/events/presence?user=...) is subscribed to at the upstream
// (SUBSCRIBE, Event: presence, RFC 3856 and RFC 6665), refreshed before
// it expires and subscribed again when the upstream ends it, and each
// NOTIFY's presence goes into the presence book, whose watchers (SSE
// events) hear of it.
//
// With several upstream targets, each PUBLISH and each new SUBSCRIBE fails
// over as a new call does (b2bua's requestFailingOver: the targets in the
// calls' order, the next one after a transport error, no answer, 408 or
// 503). A subscription stays with the target that took it; when that
// target stops answering its OPTIONS pings while another answers, the
// watched user is subscribed to again at once (at the next target in
// order: the one down goes last), and when a target preferred to it
// answers again the subscription goes back at its next refresh (no
// flapping, and the load of re-subscribing every watched user spreads
// over a refresh interval). Without OPTIONS pings a subscription moves
// only when its refresh fails.
//
// An upstream without presence (489 Bad Event, 405, 501), or one that
// wants credentials for it (401, 407, 403: Strait holds none for its API
// users; the PBX must trust Strait's address), is remembered for
// UnsupportedBackoff: meanwhile nothing is sent and presence stays local
// (the book keeps what API users publish, as in standalone mode).
package sipbridge

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/presence"
)

// Defaults, as SIP phones use them.
const (
	// PublishExpires is a publication's lifetime asked for (RFC 3903
	// section 4.1 leaves it to the publisher; phones ask for an hour).
	PublishExpires = 3600
	// SubscribeExpires is a subscription's (RFC 3856 section 6.4: the
	// default is 3600 s; ten minutes notices a lost notifier sooner).
	SubscribeExpires = 600
	// UnsupportedBackoff is how long an upstream that refused presence
	// (489, 405, 501) is left alone.
	UnsupportedBackoff = 10 * time.Minute
	// retryAfter paces attempts after a failure (timeout, 5xx, 403...).
	retryAfter = 30 * time.Second
	// endTimeout bounds the removals and unsubscriptions at Close.
	endTimeout = 2 * time.Second
	// Watcher is the user part Strait subscribes as (one subscription per
	// watched user serves every API watcher of this control plane).
	Watcher = "strait"
	// healthEvery paces the look at the subscriptions' targets (their
	// OPTIONS pings say whether they are up; every 30 s by default).
	healthEvery = time.Second
)

// Upstream sends presence requests toward the upstream (b2bua.Engine).
type Upstream interface {
	Publish(ctx context.Context, user, ifMatch string, body []byte, expires int) (*sip.Response, error)
	SubscribePresence(ctx context.Context, watcher, user string, expires int, onNotify func(b2bua.Notify)) (*b2bua.Subscription, *sip.Response, error)
}

// Config configures a Bridge.
type Config struct {
	// Upstream sends the requests; Book keeps the presence. Required.
	Upstream Upstream
	Book     *presence.Book
	// Entity returns a user's presentity URI, for PIDF documents.
	Entity func(user string) string
	// MaxWatches bounds the users subscribed to at the upstream at once
	// (0: DefaultMaxWatches). API users name whom they watch, up to 100
	// per event stream, so without it their streams could make this
	// process hold any number of subscriptions; past it a watch is
	// refused (presence stays local for that user) and counted.
	MaxWatches int
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// DefaultMaxWatches is Config.MaxWatches' default.
const DefaultMaxWatches = 10000

// Bridge keeps publications and subscriptions at the upstream. Safe for
// concurrent use.
type Bridge struct {
	cfg    Config // frozen
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    *prometheus.CounterVec

	mu          sync.Mutex // guards the fields below; never held across I/O
	pubs        map[string]chan presence.State
	watches     map[string]*watch
	unsupported map[string]time.Time // "publish", "subscribe": until when
}

// watch is one watched user's subscription loop. refs and sub are
// guarded by Bridge.mu; stop and move are frozen.
type watch struct {
	refs int
	stop chan struct{}
	// move (buffered, 1) tells the loop that its subscription's target
	// is down while another is up: subscribe again elsewhere.
	move chan struct{}
	// sub is the subscription held now (nil: none), for healthLoop.
	sub *b2bua.Subscription
}

// New starts a Bridge; Close stops it.
func New(cfg Config) *Bridge {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxWatches <= 0 {
		cfg.MaxWatches = DefaultMaxWatches
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bridge{cfg: cfg, ctx: ctx, cancel: cancel, pubs: map[string]chan presence.State{}, watches: map[string]*watch{},
		unsupported: map[string]time.Time{},
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_presence_upstream_total",
			Help: "Presence requests toward the upstream (PUBLISH, SUBSCRIBE) and NOTIFYs from it, by result: ok, failed, unsupported (489/405/501: presence kept local), forbidden (401/403/407: kept local), conflict (412/423, retried), refused_limit (a watch past the bound on subscriptions: kept local), moved (a subscription made again at another target: its own stopped answering OPTIONS, or a preferred one answers again)."},
			[]string{"request", "result"})}
	b.wg.Add(1)
	go b.healthLoop()
	return b
}

// healthLoop tells the watches whose subscription's target is down
// (b2bua.Subscription.Healthy) to move; the look is made with no lock
// held.
func (b *Bridge) healthLoop() {
	defer b.wg.Done()
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	var held []*watch
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		held = held[:0]
		b.mu.Lock()
		for _, w := range b.watches {
			if w.sub != nil {
				held = append(held, w)
			}
		}
		subs := make([]*b2bua.Subscription, len(held))
		for i, w := range held {
			subs[i] = w.sub
		}
		b.mu.Unlock()
		for i, w := range held {
			if !subs[i].Healthy() {
				select {
				case w.move <- struct{}{}:
				default:
				}
			}
		}
	}
}

// holding records the subscription w holds now (nil: none).
func (b *Bridge) holding(w *watch, sub *b2bua.Subscription) {
	b.mu.Lock()
	w.sub = sub
	b.mu.Unlock()
}

// Collectors are the bridge's metrics.
func (b *Bridge) Collectors() []prometheus.Collector { return []prometheus.Collector{b.ops} }

// Close removes the publications and ends the subscriptions (bounded in
// time), and waits for the loops.
func (b *Bridge) Close() {
	b.cancel()
	b.wg.Wait()
}

// supported reports whether op may be tried at the upstream now.
func (b *Bridge) supported(op string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Now().After(b.unsupported[op])
}

// refused notes an answer: 489, 405 and 501 mean no presence there; 401,
// 407 and 403 that the upstream wants credentials Strait does not hold
// for its API users (it must trust Strait's address for presence). Both
// leave presence local for UnsupportedBackoff.
func (b *Bridge) refused(op string, code int) bool {
	result := "unsupported"
	switch code {
	case 489, 405, 501:
	case 401, 403, 407:
		result = "forbidden"
	default:
		return false
	}
	b.mu.Lock()
	b.unsupported[op] = time.Now().Add(UnsupportedBackoff)
	b.mu.Unlock()
	b.ops.WithLabelValues(op, result).Inc()
	b.cfg.Log.Info("the upstream takes no presence from Strait: kept local", "request", op, "status", code, "retry_in", UnsupportedBackoff)
	return true
}

// Published sends user's new presence to the upstream (asynchronously:
// the newest state wins when several come quickly).
func (b *Bridge) Published(s presence.State) {
	if b.ctx.Err() != nil {
		return
	}
	b.mu.Lock()
	ch, ok := b.pubs[s.User]
	if !ok {
		ch = make(chan presence.State, 1)
		b.pubs[s.User] = ch
		b.wg.Add(1)
		go b.publishLoop(s.User, ch)
	}
	b.mu.Unlock()
	for {
		select {
		case ch <- s:
			return
		default:
		}
		select { // replace the state not yet taken
		case <-ch:
		default:
		}
	}
}

// expiresOf reads a response's Expires, or def.
func expiresOf(res *sip.Response, def int) int {
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// refreshIn is when to refresh something granted for exp seconds: at four
// fifths of it, as phones do, and never sooner than in a second.
func refreshIn(exp int) time.Duration {
	return max(time.Duration(exp)*time.Second*4/5, time.Second)
}

// publishLoop keeps user's publication: it owns etag and the refresh.
func (b *Bridge) publishLoop(user string, ch chan presence.State) {
	defer b.wg.Done()
	var (
		etag    string
		cur     presence.State
		have    bool
		expires = PublishExpires
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// send does one PUBLISH (body nil: a refresh) and the retries its
	// answer asks for, and arms the timer.
	send := func(body []byte, exp int) {
		for attempt := 0; attempt < 3; attempt++ {
			if !b.supported("publish") {
				return
			}
			ctx, cancel := context.WithTimeout(b.ctx, 40*time.Second)
			res, err := b.cfg.Upstream.Publish(ctx, user, etag, body, exp)
			cancel()
			switch {
			case err != nil:
				b.ops.WithLabelValues("publish", "failed").Inc()
				b.cfg.Log.Warn("presence PUBLISH failed", "user", user, "err", err)
				timer.Reset(retryAfter)
				etag = ""
				return
			case res.IsSuccess():
				b.ops.WithLabelValues("publish", "ok").Inc()
				if exp == 0 {
					etag = ""
					return
				}
				if h := res.GetHeader("SIP-ETag"); h != nil {
					etag = strings.TrimSpace(h.Value())
				}
				timer.Reset(refreshIn(expiresOf(res, exp)))
				return
			case res.StatusCode == 412 && etag != "":
				// RFC 3903 section 6: the entity tag is unknown there:
				// publish afresh, with the whole state.
				b.ops.WithLabelValues("publish", "conflict").Inc()
				etag = ""
				if exp == 0 {
					return
				}
				body = presence.EncodePIDF(b.cfg.Entity(user), cur)
			case res.StatusCode == 423:
				b.ops.WithLabelValues("publish", "conflict").Inc()
				if h := res.GetHeader("Min-Expires"); h != nil {
					if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > exp && n <= 86400 {
						exp, expires = n, n
						continue
					}
				}
				return
			case b.refused("publish", res.StatusCode):
				return
			default:
				b.ops.WithLabelValues("publish", "failed").Inc()
				b.cfg.Log.Warn("presence PUBLISH refused", "user", user, "status", res.StatusCode)
				timer.Reset(retryAfter)
				etag = ""
				return
			}
		}
	}
	for {
		select {
		case <-b.ctx.Done():
			if etag != "" {
				// Remove the publication (RFC 3903 section 4.5).
				ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
				b.cfg.Upstream.Publish(ctx, user, etag, nil, 0)
				cancel()
			}
			return
		case s := <-ch:
			cur, have = s, true
			timer.Stop()
			if s.Status == "offline" {
				// Offline is no publication at all: the presence server
				// shows the user closed (RFC 3903 section 4.5 removal).
				if etag != "" {
					send(nil, 0)
				}
				continue
			}
			send(presence.EncodePIDF(b.cfg.Entity(user), s), expires)
		case <-timer.C:
			switch {
			case !have || cur.Status == "offline":
			case etag != "":
				send(nil, expires)
			default: // a failed attempt: the whole state again
				send(presence.EncodePIDF(b.cfg.Entity(user), cur), expires)
			}
		}
	}
}

// Watch subscribes to user's presence at the upstream while the returned
// function has not been called (subscriptions are shared: the first
// watcher subscribes, the last one's stop unsubscribes).
func (b *Bridge) Watch(user string) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx.Err() != nil {
		return func() {}
	}
	w := b.watches[user]
	if w == nil && len(b.watches) >= b.cfg.MaxWatches {
		b.ops.WithLabelValues("subscribe", "refused_limit").Inc()
		return func() {}
	}
	if w == nil {
		w = &watch{stop: make(chan struct{}), move: make(chan struct{}, 1)}
		b.watches[user] = w
		b.wg.Add(1)
		go b.watchLoop(user, w)
	}
	w.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if w.refs--; w.refs == 0 {
				if b.watches[user] == w {
					delete(b.watches, user)
				}
				close(w.stop)
			}
		})
	}
}

// watchLoop holds user's subscription until w.stop closes: subscribe,
// refresh, subscribe again after the upstream ended it or after a
// failure.
func (b *Bridge) watchLoop(user string, w *watch) {
	defer b.wg.Done()
	for {
		if !b.subscription(user, w) {
			return
		}
	}
}

// subscription makes one subscription to user's presence and holds it
// until it ends; false when the watch is over. Each subscription has its
// NOTIFY callback of its own: the final NOTIFY of one that was left (moved
// to another target) changes nothing.
func (b *Bridge) subscription(user string, w *watch) bool {
	ended := make(chan b2bua.Notify, 1)
	var retired atomic.Bool
	defer retired.Store(true)
	defer b.holding(w, nil)
	onNotify := func(n b2bua.Notify) {
		b.ops.WithLabelValues("notify", "ok").Inc()
		select {
		case <-w.stop:
			return // the final NOTIFY of an unsubscription
		default:
		}
		if retired.Load() {
			return // a subscription left for another target
		}
		if len(n.Body) > 0 {
			if st, note, err := presence.DecodePIDF(n.Body); err != nil {
				b.ops.WithLabelValues("notify", "failed").Inc()
				b.cfg.Log.Debug("presence NOTIFY body not read", "user", user, "err", err)
			} else {
				ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
				if _, err := b.cfg.Book.Set(ctx, user, st, note); err != nil {
					b.cfg.Log.Warn("presence from the upstream not kept", "user", user, "err", err)
				}
				cancel()
			}
		}
		if n.State == "terminated" {
			select {
			case ended <- n:
			default:
			}
		}
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-w.stop:
		case <-b.ctx.Done():
		}
		return false
	}
	if !b.supported("subscribe") {
		return false // presence stays local for this watcher
	}
	ctx, cancel := context.WithTimeout(b.ctx, 40*time.Second)
	sub, res, err := b.cfg.Upstream.SubscribePresence(ctx, Watcher, user, SubscribeExpires, onNotify)
	cancel()
	switch {
	case err != nil:
		b.ops.WithLabelValues("subscribe", "failed").Inc()
		b.cfg.Log.Warn("presence SUBSCRIBE failed", "user", user, "err", err)
		return wait(retryAfter)
	case sub == nil && b.refused("subscribe", res.StatusCode):
		return false
	case sub == nil:
		b.ops.WithLabelValues("subscribe", "failed").Inc()
		b.cfg.Log.Warn("presence SUBSCRIBE refused", "user", user, "status", res.StatusCode)
		return wait(retryAfter)
	}
	b.ops.WithLabelValues("subscribe", "ok").Inc()
	select { // a signal about the subscription before this one
	case <-w.move:
	default:
	}
	b.holding(w, sub)
	refresh := time.NewTimer(refreshIn(expiresOf(res, SubscribeExpires)))
	defer refresh.Stop()
	end := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, endTimeout)
		sub.End(ctx)
		cancel()
	}
	for {
		select {
		case <-w.move:
			// Its target stopped answering OPTIONS while another answers:
			// subscribe again now (the target down is tried last); the
			// one there expires on its own.
			b.ops.WithLabelValues("subscribe", "moved").Inc()
			b.cfg.Log.Info("presence subscription's upstream target is down: subscribing again elsewhere", "user", user, "target", sub.Target())
			sub.Forget()
			return true
		case <-w.stop:
			end(context.Background())
			return false
		case <-b.ctx.Done():
			end(context.Background())
			return false
		case n := <-ended:
			// RFC 6665 section 4.1.3: after deactivated or timeout
			// subscribe again at once; after probation or giveup wait;
			// after rejected or noresource do not insist.
			switch n.Reason {
			case "deactivated", "timeout", "":
				return true
			case "probation", "giveup":
				return wait(max(time.Duration(n.Expires)*time.Second, retryAfter))
			default:
				return wait(UnsupportedBackoff)
			}
		case <-refresh.C:
			if sub.Displaced() {
				// A preferred target answers again: go back to it (the
				// SUBSCRIBE goes to the targets in order).
				b.ops.WithLabelValues("subscribe", "moved").Inc()
				b.cfg.Log.Info("a preferred upstream target answers again: moving the presence subscription back", "user", user, "target", sub.Target())
				end(b.ctx)
				return true
			}
			ctx, cancel := context.WithTimeout(b.ctx, 40*time.Second)
			res, err := sub.Refresh(ctx, SubscribeExpires)
			cancel()
			if err != nil || !res.IsSuccess() {
				b.ops.WithLabelValues("subscribe", "failed").Inc()
				sub.Forget()
				return true // 481 or no answer: subscribe afresh
			}
			b.ops.WithLabelValues("subscribe", "ok").Inc()
			refresh.Reset(refreshIn(expiresOf(res, SubscribeExpires)))
		}
	}
}

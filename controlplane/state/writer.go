package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Writer defaults, each with its reason.
const (
	// DefaultFlushInterval is how long a change may wait to be written
	// with others: what a crash of the control plane can lose (a re-INVITE
	// answered in the last 20 ms) against one transaction (one fsync, one
	// Redis round trip) per 20 ms at any call rate.
	DefaultFlushInterval = 20 * time.Millisecond
	// DefaultPingInterval is how often an idle Writer checks that the
	// store answers, so that an outage is noticed (and new calls refused)
	// before a call needs a write.
	DefaultPingInterval = time.Second
	// maxBatch bounds one write: a larger backlog (after an outage) goes
	// in several.
	maxBatch = 1024
	// retryMax caps the backoff between attempts while the store is down.
	retryMax = 2 * time.Second
	// opTimeout bounds one write or ping.
	opTimeout = 2 * time.Second
)

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Store is the backend. Required.
	Store Store
	// FlushInterval: 0 is the store's own (a store with a FlushInterval
	// method, such as Bolt), else DefaultFlushInterval.
	FlushInterval time.Duration
	// PingInterval: 0 is DefaultPingInterval.
	PingInterval time.Duration
	// OnHealth, when set, is called with the store's health at start and
	// on every change (for a gauge); OnWrite with each batch's size and
	// outcome (for counters). Both run on the Writer's goroutine.
	OnHealth func(up bool)
	OnWrite  func(records int, err error)
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Writer writes changes through to a Store in batches, off the callers'
// goroutines: Put and Delete never block on the store. It keeps the latest
// change per key until it is written, so a backlog is bounded by the keys
// that changed (live calls and bindings), not by the changes. It is safe
// for concurrent use.
type Writer struct {
	// Frozen after NewWriter.
	cfg  WriterConfig
	log  *slog.Logger
	kick chan struct{} // a change is waiting
	now  chan struct{} // a Flush caller waits: write without gathering
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns

	up atomic.Bool // the last write or ping succeeded

	// checking holds a token while a generation check runs (CheckStore):
	// checks take turns, so that a caller learns of a loss only once the
	// owners have written their records again. A turn, not a lock: it is
	// waited for with a context and guards gen, the store's generation
	// as this process last saw it ("" not yet known).
	checking chan struct{}
	gen      string
	// seen is gen for readers outside the turn (Generation).
	seen atomic.Pointer[string]
	// recheck asks run for a generation check now (Advance found the
	// store's generation changed).
	recheck chan struct{}
	// lost counts the times the store was found to have lost its records.
	lost atomic.Uint64

	mu      sync.Mutex // guards the fields below
	pending map[pendingKey]Change
	// inflight are the changes of the write in progress, taken out of
	// pending: Get answers from them until the store has them.
	inflight map[pendingKey]Change
	waiters  []chan error // Flush callers, answered after the next write
	onLost   []func()     // see OnLost
	gate     func() error // see SetGate
}

type pendingKey struct {
	kind Kind
	key  string
}

// NewWriter starts a Writer. It checks the store once (so Up is true from
// the start when the store answers).
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
		if p, ok := cfg.Store.(interface{ FlushInterval() time.Duration }); ok {
			cfg.FlushInterval = p.FlushInterval()
		}
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	w := &Writer{cfg: cfg, log: cfg.Log, kick: make(chan struct{}, 1), now: make(chan struct{}, 1), checking: make(chan struct{}, 1), recheck: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		pending: map[pendingKey]Change{}, inflight: map[pendingKey]Change{}}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	err := cfg.Store.Ping(ctx)
	cancel()
	if err == nil {
		err = w.checkGeneration()
	}
	w.up.Store(err == nil)
	if err != nil {
		w.log.Warn("state store does not answer; new calls are refused until it does", "store", cfg.Store.Name(), "err", err)
	}
	if cfg.OnHealth != nil {
		cfg.OnHealth(err == nil)
	}
	go w.run()
	return w
}

// Store is the backend (for reads at start, and direct operations such as
// Advance and Lease).
func (w *Writer) Store() Store { return w.cfg.Store }

// Up reports whether the store answered its last write or ping.
func (w *Writer) Up() bool { return w.up.Load() }

// Put queues value (which the Writer now owns) under kind/key.
func (w *Writer) Put(kind Kind, key string, value []byte) {
	w.queue(Change{Kind: kind, Key: key, Value: value})
}

// PutTTL queues value with an expiry.
func (w *Writer) PutTTL(kind Kind, key string, value []byte, ttl time.Duration) {
	w.queue(Change{Kind: kind, Key: key, Value: value, TTL: ttl})
}

// Delete queues the removal of kind/key.
func (w *Writer) Delete(kind Kind, key string) { w.queue(Change{Kind: kind, Key: key}) }

// Discard drops what is queued for kind/key and not yet written: a record
// this process no longer owns (another control plane took the call over
// while this one was fenced) must not overwrite the owner's.
func (w *Writer) Discard(kind Kind, key string) {
	w.mu.Lock()
	delete(w.pending, pendingKey{kind, key})
	w.mu.Unlock()
}

// SetGate makes every write first ask gate: while it returns an error
// nothing is written (the changes wait, the store counts as down and new
// calls are refused), as when the store does not answer. A cluster
// member fences itself so while its lease has expired.
func (w *Writer) SetGate(gate func() error) {
	w.mu.Lock()
	w.gate = gate
	w.mu.Unlock()
}

// gateErr is the gate's answer (SetGate); nil without one.
func (w *Writer) gateErr() error {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate == nil {
		return nil
	}
	return gate()
}

// Get reads kind/key as this process last wrote it: a change queued or
// being written, else the store's record. An owner that reads, changes
// and writes a record back (a user's call history) thus builds on its own
// last write, whether or not the store has it yet, and its writes go in
// the Writer's transactions with everything else. The value must not be
// modified.
func (w *Writer) Get(ctx context.Context, kind Kind, key string) ([]byte, bool, error) {
	k := pendingKey{kind, key}
	w.mu.Lock()
	c, ok := w.pending[k]
	if !ok {
		c, ok = w.inflight[k]
	}
	w.mu.Unlock()
	if ok {
		return c.Value, c.Value != nil, nil
	}
	return w.cfg.Store.Get(ctx, kind, key)
}

// GetKnown reads kind/key as Get does, for a caller that holds a copy of
// the record (known: what it read or wrote last). When the record is
// still that, it answers unchanged and no value: a store that can tell so
// by itself (Redis compares a digest there) does not send the record
// back. A user's call history, tens of kB rewritten every 200 ms while
// their calls end, is thus not read back by the process that wrote it
// (package history). known nil is Get.
func (w *Writer) GetKnown(ctx context.Context, kind Kind, key string, known []byte) (value []byte, ok, unchanged bool, err error) {
	k := pendingKey{kind, key}
	w.mu.Lock()
	c, queued := w.pending[k]
	if !queued {
		c, queued = w.inflight[k]
	}
	w.mu.Unlock()
	switch {
	case queued:
		value, ok = c.Value, c.Value != nil
	case known != nil:
		if kg, can := w.cfg.Store.(knownGetter); can {
			value, ok, unchanged, err = kg.getKnown(ctx, kind, key, known)
			if unchanged {
				return nil, true, true, err
			}
			return value, ok, false, err
		}
		fallthrough
	default:
		value, ok, err = w.cfg.Store.Get(ctx, kind, key)
	}
	if ok && known != nil && bytes.Equal(value, known) {
		return nil, true, true, err
	}
	return value, ok, false, err
}

// knownGetter is a Store that can tell whether a record is still the one
// a caller holds without sending it (Writer.GetKnown).
type knownGetter interface {
	getKnown(ctx context.Context, kind Kind, key string, known []byte) (value []byte, ok, unchanged bool, err error)
}

func (w *Writer) queue(c Change) {
	w.mu.Lock()
	w.pending[pendingKey{c.Kind, c.Key}] = c
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Pending is the number of keys waiting to be written.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// errWriterClosed answers a Flush after Close.
var errWriterClosed = errors.New("state: writer closed")

// Flush waits until what was queued before it is written, or ctx ends.
// It does not wait for the batch interval.
func (w *Writer) Flush(ctx context.Context) error {
	ch := make(chan error, 1)
	w.mu.Lock()
	w.waiters = append(w.waiters, ch)
	w.mu.Unlock()
	for _, c := range []chan struct{}{w.kick, w.now} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		return errWriterClosed
	}
}

// Close writes what is pending (for at most opTimeout) and stops. It does
// not close the Store.
func (w *Writer) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	n := len(w.pending)
	w.mu.Unlock()
	if n > 0 {
		return errors.New("state: changes not written at close")
	}
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	ping := time.NewTicker(w.cfg.PingInterval)
	defer ping.Stop()
	backoff := w.cfg.FlushInterval
	for {
		select {
		case <-w.stop:
			w.flushOnce()
			return
		case <-w.recheck:
			w.checkGeneration()
			continue
		case <-ping.C:
			// The generation's read is the ping; while changes are
			// pending their write tells the health.
			err := w.checkGeneration()
			if err == nil {
				err = w.gateErr()
			}
			if w.Pending() == 0 {
				w.health(err)
			}
			continue
		case <-w.kick:
		}
		// Gather what comes within the interval into one batch.
		t := time.NewTimer(w.cfg.FlushInterval)
		select {
		case <-w.stop:
		case <-w.now:
		case <-t.C:
		}
		t.Stop()
		for failed := false; ; failed = true {
			err := w.flushOnce()
			if err == nil {
				backoff = w.cfg.FlushInterval
				if failed {
					// Back after an outage: it may have come back
					// empty.
					w.checkGeneration()
				}
				break
			}
			// Down: keep the changes, retry with backoff (a ping is not
			// needed; the next attempt tells).
			backoff = min(2*backoff, retryMax)
			select {
			case <-w.stop:
				w.flushOnce()
				return
			case <-time.After(backoff):
			}
		}
	}
}

// flushOnce writes everything pending, in batches of maxBatch, and
// answers the Flush callers waiting since before it started.
func (w *Writer) flushOnce() error {
	if err := w.gateErr(); err != nil {
		w.health(err)
		return err
	}
	w.mu.Lock()
	waiters := w.waiters
	w.waiters = nil
	w.mu.Unlock()
	var err error
	for {
		w.mu.Lock()
		batch := make([]Change, 0, min(len(w.pending), maxBatch))
		for k, c := range w.pending {
			if len(batch) == maxBatch {
				break
			}
			batch = append(batch, c)
			delete(w.pending, k)
			w.inflight[k] = c
		}
		w.mu.Unlock()
		if len(batch) == 0 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err = w.cfg.Store.Apply(ctx, batch)
		cancel()
		if w.cfg.OnWrite != nil {
			w.cfg.OnWrite(len(batch), err)
		}
		w.mu.Lock()
		for _, c := range batch {
			k := pendingKey{c.Kind, c.Key}
			delete(w.inflight, k)
			if _, newer := w.pending[k]; err != nil && !newer {
				// Put back what a newer change has not replaced
				// meanwhile.
				w.pending[k] = c
			}
		}
		w.mu.Unlock()
		if err != nil {
			break
		}
	}
	w.health(err)
	if err != nil {
		// Flush callers wait for the store to come back (or give up).
		w.mu.Lock()
		w.waiters = append(waiters, w.waiters...)
		w.mu.Unlock()
		return err
	}
	for _, ch := range waiters {
		ch <- nil
	}
	return nil
}

// generationKey names the store's generation (kind Secrets): a random
// value the first process to find none writes. A store that loses its
// records (a Redis restarted without persistence, a failover to a replica
// that had not caught up) loses it too, and every Writer on that store
// then sees it missing or changed.
const generationKey = "store-generation"

// newGeneration makes a store generation: its time of making (Unix
// milliseconds) and random text. GenerationTime reads the time back.
func newGeneration(now time.Time) string {
	return strconv.FormatInt(now.UnixMilli(), 10) + "." + rand.Text()
}

// GenerationTime returns when the generation gen was made (a store that
// came back empty holds nothing from before), to the millisecond; zero
// for a generation without one (made by an earlier version).
func GenerationTime(gen string) time.Time {
	ts, _, ok := strings.Cut(gen, ".")
	ms, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Generation returns the store's generation as this Writer last saw it
// ("" before it first could read it).
func (w *Writer) Generation() string {
	if g := w.seen.Load(); g != nil {
		return *g
	}
	return ""
}

// ErrStoreLost is returned by Writer.Advance when the store's generation
// is not the one the Writer saw last: the store lost its records.
var ErrStoreLost = errors.New("state: the store lost its records (its generation changed)")

// fencedAdvancer is a Store that checks its generation in the same step
// as an Advance (Redis: one script), so that a counter lost with the
// store is never taken as fresh, with no extra round trip.
type fencedAdvancer interface {
	advanceIn(ctx context.Context, gen string, kind Kind, key string, n uint64, ttl time.Duration) (bool, error)
}

// Advance is Store.Advance, refused with ErrStoreLost when the store no
// longer holds the generation this Writer saw last (checked in the same
// step where the store can: Redis), and the Writer then checks the store
// at once (OnLost runs on its goroutine) instead of at its next ping: a
// digest nonce count written before a Redis came back empty is never
// taken as fresh. Without a generation yet, or on a store that cannot
// check in the same step (the embedded and memory stores serve one
// process: nobody else can empty them), it is Store.Advance.
func (w *Writer) Advance(ctx context.Context, kind Kind, key string, n uint64, ttl time.Duration) (bool, error) {
	fa, ok := w.cfg.Store.(fencedAdvancer)
	gen := w.Generation()
	if !ok || gen == "" {
		return w.cfg.Store.Advance(ctx, kind, key, n, ttl)
	}
	fresh, err := fa.advanceIn(ctx, gen, kind, key, n, ttl)
	if errors.Is(err, ErrStoreLost) {
		select {
		case w.recheck <- struct{}{}:
		default:
		}
	}
	return fresh, err
}

// Generation returns the store's generation (see Writer.CheckStore), ok
// false when it has none (no Writer made it yet, or the store lost it).
// A reader that keeps a copy of some records compares it over time to
// tell records removed from those lost with the store.
func Generation(ctx context.Context, st Store) (gen string, ok bool, err error) {
	v, ok, err := st.Get(ctx, Secrets, generationKey)
	return string(v), ok, err
}

// OnLost registers f to be called (on the Writer's goroutine, or
// CheckStore's caller's) when the
// store is found to have lost the records it held (its generation
// changed: a Redis that came back empty): f queues again, with Put, every
// live record its owner keeps (calls, bindings, sessions, secrets). A
// Writer checks at start, every PingInterval and as soon as a store that
// was down answers again. Register before records are written.
func (w *Writer) OnLost(f func()) {
	w.mu.Lock()
	w.onLost = append(w.onLost, f)
	w.mu.Unlock()
}

// Lost counts the times the store was found to have lost its records.
func (w *Writer) Lost() uint64 { return w.lost.Load() }

// checkGeneration reads the store's generation (making it when there is
// none) and, when it is not the one this process saw last, has the
// owners write their live records again. It returns the store's error.
// NewWriter, then run only.
func (w *Writer) checkGeneration() error {
	_, err := w.CheckStore(context.Background())
	return err
}

// CheckStore checks now whether the store still holds what this process
// wrote (its generation is the one seen last) and, when it does not, has
// the owners write their records again (OnLost) before it returns. lost
// reports such a loss. Safe for concurrent use.
func (w *Writer) CheckStore(ctx context.Context) (lost bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	select {
	case w.checking <- struct{}{}:
		defer func() { <-w.checking }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	st := w.cfg.Store
	if w.gen != "" {
		v, ok, err := st.Get(ctx, Secrets, generationKey)
		if err != nil || (ok && string(v) == w.gen) {
			return false, err
		}
	}
	v, err := st.PutIfAbsent(ctx, Secrets, generationKey, []byte(newGeneration(time.Now())))
	if err != nil {
		return false, err
	}
	first := w.gen == ""
	w.gen = string(v)
	g := w.gen
	w.seen.Store(&g)
	if first {
		return false, nil
	}
	w.lost.Add(1)
	w.mu.Lock()
	fs := slices.Clone(w.onLost)
	w.mu.Unlock()
	w.log.Warn("state store lost its records (restarted without persistence?): every live call, registration and session is written again",
		"store", st.Name())
	for _, f := range fs {
		f()
	}
	return true, nil
}

// health records the outcome of a write or ping and reports changes.
func (w *Writer) health(err error) {
	up := err == nil
	if w.up.Swap(up) == up {
		return
	}
	if up {
		w.log.Info("state store answers again; new calls are accepted", "store", w.cfg.Store.Name(), "pending", w.Pending())
	} else {
		w.log.Error("state store down: new calls are refused (503) until it answers; calls in progress go on",
			"store", w.cfg.Store.Name(), "err", err, "pending", w.Pending())
	}
	if w.cfg.OnHealth != nil {
		w.cfg.OnHealth(up)
	}
}

package state

import (
	"context"
	"errors"
	"log/slog"
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
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns

	up atomic.Bool // the last write or ping succeeded

	mu      sync.Mutex // guards the fields below
	pending map[pendingKey]Change
	waiters []chan error // Flush callers, answered after the next write
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
	w := &Writer{cfg: cfg, log: cfg.Log, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		pending: map[pendingKey]Change{}}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	err := cfg.Store.Ping(ctx)
	cancel()
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
func (w *Writer) Flush(ctx context.Context) error {
	ch := make(chan error, 1)
	w.mu.Lock()
	w.waiters = append(w.waiters, ch)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
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
		case <-ping.C:
			if w.Pending() == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				w.health(w.cfg.Store.Ping(ctx))
				cancel()
			}
			continue
		case <-w.kick:
		}
		// Gather what comes within the interval into one batch.
		t := time.NewTimer(w.cfg.FlushInterval)
		select {
		case <-w.stop:
		case <-t.C:
		}
		t.Stop()
		for {
			err := w.flushOnce()
			if err == nil {
				backoff = w.cfg.FlushInterval
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
		if err != nil {
			// Put back what a newer change has not replaced meanwhile.
			w.mu.Lock()
			for _, c := range batch {
				k := pendingKey{c.Kind, c.Key}
				if _, newer := w.pending[k]; !newer {
					w.pending[k] = c
				}
			}
			w.mu.Unlock()
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

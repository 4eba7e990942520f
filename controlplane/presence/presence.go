// Package presence keeps the presence that Strait's users publish through
// the HTTP API (available, away, busy, dnd, offline, and a note), in the
// state store (kind "presence", one record per user), so that it survives
// a restart and every control plane sharing the store sees it. Changes go
// out on the store's message bus, so a watcher on any control plane hears
// of a change made on another.
//
// This is Strait's own presence service for standalone mode (the issue's
// "kept by Strait"); a user who published nothing is shown as available
// while registered and offline otherwise (package api does that
// derivation, from the registry).
package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/strait-sbc/strait/controlplane/state"
)

// Kind is the state store's kind for presence: key the user, value a
// JSON State.
const Kind state.Kind = "presence"

// channel is the store's bus channel for changes.
const channel = "strait.presence"

// Statuses a user may publish. They follow what phones and chat clients
// show; "offline" is RFC 3863's closed basic status, every other is open.
var Statuses = []string{"available", "away", "busy", "dnd", "offline"}

// MaxNote bounds a note, in characters.
const MaxNote = 256

// watchQueue is a watcher's buffer: a watcher that falls further behind
// loses changes (counted) rather than holding up the others.
const watchQueue = 64

// resubscribe is the pause before subscribing again after the bus
// dropped the subscription (a Redis connection lost).
const resubscribe = time.Second

// State is one user's published presence.
type State struct {
	User    string    `json:"user"`
	Status  string    `json:"status"`
	Note    string    `json:"note,omitempty"`
	Updated time.Time `json:"updated"`
}

// Check validates what a user publishes.
func Check(status, note string) error {
	if !slices.Contains(Statuses, status) {
		return fmt.Errorf("status %q: want one of %s", status, strings.Join(Statuses, ", "))
	}
	if !utf8.ValidString(note) || utf8.RuneCountInString(note) > MaxNote {
		return fmt.Errorf("note: at most %d characters of UTF-8", MaxNote)
	}
	if strings.ContainsFunc(note, unicode.IsControl) {
		return fmt.Errorf("note: no control characters")
	}
	return nil
}

// Config configures a Book.
type Config struct {
	// Store keeps the presence and carries the changes. Required.
	Store state.Store
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Book is the users' presence. It is safe for concurrent use.
type Book struct {
	cfg    Config // frozen
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // guards watchers and mine
	watchers map[chan State]struct{}
	// mine is the latest presence published through this Book, by user,
	// until a newer one is heard from another control plane: written again
	// to a store that lost its records (Rewrite).
	mine map[string]State
	lost atomic.Uint64 // changes a slow watcher did not get
}

// New starts a Book: it listens to the store's bus until Close.
func New(cfg Config) *Book {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Book{cfg: cfg, cancel: cancel, done: make(chan struct{}), watchers: map[chan State]struct{}{}, mine: map[string]State{}}
	// The first subscription is made here, so that a change made once
	// New returned is heard; listen renews it if the bus drops it.
	first, err := cfg.Store.Subscribe(ctx, channel)
	if err != nil {
		cfg.Log.Warn("bus subscription failed", "channel", channel, "err", err)
	}
	go b.listen(ctx, first)
	return b
}

// Close stops the Book; its watchers' channels are closed.
func (b *Book) Close() {
	b.cancel()
	<-b.done
	b.mu.Lock()
	for ch := range b.watchers {
		close(ch)
	}
	b.watchers = map[chan State]struct{}{}
	b.mu.Unlock()
}

// listen fans the bus's changes out to the watchers of this process.
func (b *Book) listen(ctx context.Context, ch <-chan []byte) {
	defer close(b.done)
	for ctx.Err() == nil {
		var err error
		if ch == nil {
			ch, err = b.cfg.Store.Subscribe(ctx, channel)
		}
		if err != nil {
			b.cfg.Log.Warn("presence: bus subscription failed", "err", err)
		} else {
			for msg := range ch {
				var s State
				if err := json.Unmarshal(msg, &s); err != nil {
					continue
				}
				b.fan(s)
			}
		}
		ch = nil // dropped: subscribe again
		select {
		case <-ctx.Done():
		case <-time.After(resubscribe):
		}
	}
}

func (b *Book) fan(s State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.mine[s.User]; ok && s.Updated.After(m.Updated) {
		delete(b.mine, s.User) // published elsewhere since: that one's to keep
	}
	for ch := range b.watchers {
		select {
		case ch <- s:
		default:
			b.lost.Add(1)
		}
	}
}

// Lost counts the changes watchers were too slow to take.
func (b *Book) Lost() uint64 { return b.lost.Load() }

// Watch returns a channel of every change from now on (from any control
// plane) and the function that stops it.
func (b *Book) Watch() (<-chan State, func()) {
	ch := make(chan State, watchQueue)
	b.mu.Lock()
	b.watchers[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			if _, ok := b.watchers[ch]; ok {
				delete(b.watchers, ch)
				close(ch)
			}
			b.mu.Unlock()
		})
	}
}

// Set publishes user's presence: stored, then announced.
func (b *Book) Set(ctx context.Context, user, status, note string) (State, error) {
	if err := Check(status, note); err != nil {
		return State{}, err
	}
	s := State{User: user, Status: status, Note: note, Updated: b.cfg.Now().UTC()}
	v, err := json.Marshal(s)
	if err != nil {
		return State{}, err
	}
	if err := b.cfg.Store.Apply(ctx, []state.Change{{Kind: Kind, Key: user, Value: v}}); err != nil {
		return State{}, err
	}
	b.mu.Lock()
	b.mine[user] = s
	b.mu.Unlock()
	if err := b.cfg.Store.Publish(ctx, channel, v); err != nil {
		// Stored: readers see it; only live watchers miss it.
		b.cfg.Log.Warn("presence: change not announced", "user", user, "err", err)
	}
	return s, nil
}

// Get returns user's published presence; ok is false when there is none.
func (b *Book) Get(ctx context.Context, user string) (s State, ok bool, err error) {
	v, ok, err := b.cfg.Store.Get(ctx, Kind, user)
	if err != nil || !ok {
		return State{}, false, err
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return State{}, false, nil
	}
	return s, true, nil
}

// All returns every published presence, by user.
func (b *Book) All(ctx context.Context) (map[string]State, error) {
	recs, err := b.cfg.Store.Load(ctx, Kind)
	if err != nil {
		return nil, err
	}
	out := make(map[string]State, len(recs))
	for user, v := range recs {
		var s State
		if json.Unmarshal(v, &s) == nil {
			out[user] = s
		}
	}
	return out, nil
}

// Rewrite writes again the presence last published through this Book to
// a store that lost its records (a Redis restarted without persistence;
// state.Writer.OnLost), unless a record is there already (another control
// plane was first, or the user published again): a user's status does
// not fall back to the registration-derived one because Redis restarted.
// It returns how many of them the store holds afterwards.
func (b *Book) Rewrite(ctx context.Context) (int, error) {
	b.mu.Lock()
	mine := make([]State, 0, len(b.mine))
	for _, s := range b.mine {
		mine = append(mine, s)
	}
	b.mu.Unlock()
	n := 0
	for _, s := range mine {
		v, err := json.Marshal(s)
		if err != nil {
			continue
		}
		got, err := b.cfg.Store.PutIfAbsent(ctx, Kind, s.User, v)
		if err != nil {
			return n, err
		}
		if string(got) == string(v) {
			n++
		}
	}
	return n, nil
}

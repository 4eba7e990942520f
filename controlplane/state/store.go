package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kind is a class of records: a bucket (bbolt), a hash (Redis).
type Kind string

// The kinds the control plane keeps.
const (
	// Calls are answered calls: both dialogs, the negotiated media, the
	// dataplane session (package b2bua).
	Calls Kind = "calls"
	// Bindings are registrations, live or whose WebSocket closed (package
	// registrar).
	Bindings Kind = "bindings"
	// Secrets are keys the control planes share (the digest nonce key).
	Secrets Kind = "secrets"
	// Sessions are the all-in-one dataplane's sessions as it must rebuild
	// them: ports, ICE credentials, SRTP keys. Kept 0600, never logged.
	Sessions Kind = "sessions"
	// Nonces are digest nonces with the highest nonce count used (TTL'd).
	Nonces Kind = "nonces"
	// Leases are owned keys (TTL'd); see Store.Lease.
	Leases Kind = "leases"
	// Members are the control planes sharing the store, by instance id
	// (package cluster): listed while they may own calls, removed when
	// they leave or a survivor has taken their calls over.
	Members Kind = "members"
)

// Change is one write: Value nil deletes the key. TTL, when set, makes the
// record expire on its own (nonces, leases); records without TTL live
// until deleted.
type Change struct {
	Kind  Kind
	Key   string
	Value []byte
	TTL   time.Duration
}

// Store is a state backend. Implementations are safe for concurrent use;
// every method may do network I/O (Redis) and honours ctx.
type Store interface {
	// Apply writes changes, in order, as one batch (one transaction where
	// the backend has them).
	Apply(ctx context.Context, changes []Change) error
	// Load returns every live record of kind, by key.
	Load(ctx context.Context, kind Kind) (map[string][]byte, error)
	// Get returns one record; ok is false when there is none.
	Get(ctx context.Context, kind Kind, key string) (value []byte, ok bool, err error)
	// PutIfAbsent stores value under key unless a record is there, and
	// returns the record that is there afterwards (value, or the one that
	// was). A shared secret is made this way: the first process wins.
	PutIfAbsent(ctx context.Context, kind Kind, key string, value []byte) ([]byte, error)
	// Advance raises the counter under key to n if n is higher than the
	// counter (absent counts as zero), with the record expiring after ttl,
	// and reports whether it did: a digest nonce count is fresh only once,
	// whichever control plane sees it.
	Advance(ctx context.Context, kind Kind, key string, n uint64, ttl time.Duration) (bool, error)
	// Lease gives owner the lease name for ttl: taken when free or already
	// owner's (a renewal), refused when another owner holds it.
	Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// Release gives the lease up if owner holds it.
	Release(ctx context.Context, name, owner string) error
	// Publish sends msg to the subscribers of channel (all processes).
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe delivers channel's messages until ctx ends; a slow reader
	// loses messages rather than blocking others. A nil message is a gap
	// mark: the subscription was lost and made again (Redis reconnected),
	// messages published meanwhile are lost, and a subscriber that keeps
	// a copy of what they tell reads the records again.
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
	// Push appends msg to queue, an inbox one process reads (Receive):
	// the queue keeps its last max messages (roughly: a few more may
	// stay) and disappears ttl after the last Push.
	Push(ctx context.Context, queue string, msg []byte, max int, ttl time.Duration) error
	// Receive delivers the messages pushed to queue from the call on, in
	// order and each once, until ctx ends (the channel then closes).
	// Unlike Subscribe nothing pushed is lost while the connection to
	// the store is down: what was pushed meanwhile comes when it is back
	// (unless more than the queue's max came, or its ttl passed), and a
	// slow reader leaves messages in the queue instead of losing them.
	// One process reads a queue.
	Receive(ctx context.Context, queue string) (<-chan []byte, error)
	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	// Name describes the backend for logs ("bolt /var/lib/strait/state.db",
	// "redis 10.0.0.5:6379/0"), without credentials.
	Name() string
	// Close releases the backend.
	Close() error
}

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("state: store closed")

// FileName is the embedded store's file under the data directory.
const FileName = "state.db"

// Open opens the store --state names: "memory", "redis://..." /
// "rediss://..." / "redis+sentinel://...", or "" / "embedded" for the
// bbolt file under dataDir (created 0700, the file 0600).
func Open(spec, dataDir string) (Store, error) {
	switch {
	case spec == "memory":
		return NewMemory(), nil
	case spec == "" || spec == "embedded":
		if dataDir == "" {
			return nil, errors.New("state: the embedded store needs --data-dir")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("state: data directory: %w", err)
		}
		return OpenBolt(filepath.Join(dataDir, FileName))
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"), strings.HasPrefix(spec, "redis+sentinel://"):
		return OpenRedis(spec)
	}
	return nil, fmt.Errorf("state %q: want embedded, memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis+sentinel://HOST:PORT/MASTER", spec)
}

// ValidSpec checks a --state value without opening it.
func ValidSpec(spec string) error {
	switch {
	case spec == "", spec == "embedded", spec == "memory":
		return nil
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		_, err := redisOptions(spec)
		return err
	case strings.HasPrefix(spec, "redis+sentinel://"):
		_, err := sentinelOptions(spec)
		return err
	}
	return fmt.Errorf("%q: want embedded, memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis+sentinel://HOST:PORT/MASTER", spec)
}

// IsShared reports whether st may be shared by several control planes
// (Redis: its Name starts with "redis"); the embedded and memory stores
// serve one process.
func IsShared(st Store) bool { return strings.HasPrefix(st.Name(), "redis") }

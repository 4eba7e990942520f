package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bolt is the embedded Store: one bbolt file (a B+tree with copy-on-write
// pages and one fsync per transaction, the store etcd runs on) that one
// process holds open (bbolt locks the file). Why bbolt rather than SQLite
// through a pure-Go driver: the records are opaque values by key, which is
// bbolt's whole model; it is pure Go with no cgo or C transpiled to Go, a
// small dependency, and crash-safe without a write-ahead log to tune.
//
// Each record is stored as 8 bytes of expiry (Unix nanoseconds, 0 for
// none) then the value. Leases and publish/subscribe are within the
// process: one process is the whole service on an embedded store.
type Bolt struct {
	db     *bolt.DB
	path   string
	bus    localBus
	queues localQueues
	leases localLeases

	mu        sync.Mutex // guards lastSweep
	lastSweep time.Time
}

var _ Store = (*Bolt)(nil)

// BoltFlushInterval is the Writer's batching interval on the embedded
// store: each batch is a transaction with an fsync, a fixed cost (about
// 0.5 ms of CPU on ext4) that at the default 20 ms interval was most of
// what the store cost per call (strait-bench calls --state); at 100 ms a
// crash loses at most the last 100 ms of changes (the all-in-one's
// dataplane sessions are saved every 200 ms anyway).
const BoltFlushInterval = 100 * time.Millisecond

// FlushInterval is the Writer's batching interval for this store.
func (b *Bolt) FlushInterval() time.Duration { return BoltFlushInterval }

// lockWait is how long opening waits for another process's lock on the
// file before giving up with an error that says so.
const lockWait = time.Second

// sweepEvery paces the removal of expired records (nonces, leases).
const sweepEvery = time.Minute

// ErrLocked is returned by OpenBolt when another process holds the file.
var ErrLocked = errors.New("state: the state file is in use by another process (another strait with the same --data-dir?)")

// OpenBolt opens (creating, mode 0600) the bbolt file at path.
func OpenBolt(path string) (*Bolt, error) {
	// The freelist is not written with every commit (bbolt rebuilds it
	// from the pages when it opens the file): one page less to write and
	// sync per transaction, as etcd runs bbolt.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", path, err)
	}
	return &Bolt{db: db, path: path, lastSweep: time.Now()}, nil
}

func encodeRecord(value []byte, ttl time.Duration, now time.Time) []byte {
	var exp int64
	if ttl > 0 {
		exp = now.Add(ttl).UnixNano()
	}
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(exp))
	return append(out, value...)
}

// decodeRecord returns a stored record's value, false when it is
// malformed or expired.
func decodeRecord(b []byte, now time.Time) ([]byte, bool) {
	if len(b) < 8 {
		return nil, false
	}
	if exp := int64(binary.BigEndian.Uint64(b)); exp != 0 && now.UnixNano() >= exp {
		return nil, false
	}
	return b[8:], true
}

// Apply implements Store: one transaction, one fsync.
func (s *Bolt) Apply(_ context.Context, changes []Change) error {
	now := time.Now()
	sweep := false
	s.mu.Lock()
	if now.Sub(s.lastSweep) >= sweepEvery {
		s.lastSweep, sweep = now, true
	}
	s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, c := range changes {
			if c.Value == nil {
				if b := tx.Bucket([]byte(c.Kind)); b != nil {
					if err := b.Delete([]byte(c.Key)); err != nil {
						return err
					}
				}
				continue
			}
			b, err := tx.CreateBucketIfNotExists([]byte(c.Kind))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(c.Key), encodeRecord(c.Value, c.TTL, now)); err != nil {
				return err
			}
		}
		if sweep {
			return sweepExpired(tx, now)
		}
		return nil
	})
}

// sweepExpired deletes expired records of the kinds that have TTLs.
func sweepExpired(tx *bolt.Tx, now time.Time) error {
	for _, k := range []Kind{Nonces, Leases} {
		b := tx.Bucket([]byte(k))
		if b == nil {
			continue
		}
		var dead [][]byte
		b.ForEach(func(k, v []byte) error {
			if _, ok := decodeRecord(v, now); !ok {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Load implements Store.
func (s *Bolt) Load(_ context.Context, kind Kind) (map[string][]byte, error) {
	out := map[string][]byte{}
	now := time.Now()
	if kind == Leases {
		return s.leases.load(now), nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if val, ok := decodeRecord(v, now); ok {
				out[string(k)] = append([]byte(nil), val...)
			}
			return nil
		})
	})
	return out, err
}

// Get implements Store.
func (s *Bolt) Get(_ context.Context, kind Kind, key string) ([]byte, bool, error) {
	if kind == Leases {
		v, ok := s.leases.get(key, time.Now())
		return v, ok, nil
	}
	var out []byte
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		if val, ok := decodeRecord(b.Get([]byte(key)), time.Now()); ok {
			out, found = append([]byte(nil), val...), true
		}
		return nil
	})
	return out, found, err
}

// PutIfAbsent implements Store.
func (s *Bolt) PutIfAbsent(_ context.Context, kind Kind, key string, value []byte) ([]byte, error) {
	var out []byte
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(kind))
		if err != nil {
			return err
		}
		if val, ok := decodeRecord(b.Get([]byte(key)), now); ok {
			out = append([]byte(nil), val...)
			return nil
		}
		out = append([]byte(nil), value...)
		return b.Put([]byte(key), encodeRecord(value, 0, now))
	})
	return out, err
}

// Advance implements Store.
func (s *Bolt) Advance(_ context.Context, kind Kind, key string, n uint64, ttl time.Duration) (bool, error) {
	advanced := false
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(kind))
		if err != nil {
			return err
		}
		if val, ok := decodeRecord(b.Get([]byte(key)), now); ok && len(val) == 8 && binary.BigEndian.Uint64(val) >= n {
			return nil
		}
		advanced = true
		return b.Put([]byte(key), encodeRecord(binary.BigEndian.AppendUint64(nil, n), ttl, now))
	})
	return advanced, err
}

// Lease implements Store (within the process).
func (s *Bolt) Lease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	return s.leases.take(name, owner, ttl, time.Now()), nil
}

// Release implements Store.
func (s *Bolt) Release(_ context.Context, name, owner string) error {
	s.leases.release(name, owner)
	return nil
}

// Publish implements Store (within the process).
func (s *Bolt) Publish(_ context.Context, channel string, msg []byte) error {
	s.bus.publish(channel, msg)
	return nil
}

// Subscribe implements Store.
func (s *Bolt) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	return s.bus.subscribe(ctx, channel), nil
}

// Push implements Store (within the process).
func (s *Bolt) Push(_ context.Context, queue string, msg []byte, max int, _ time.Duration) error {
	s.queues.push(queue, msg, max)
	return nil
}

// Receive implements Store.
func (s *Bolt) Receive(ctx context.Context, queue string) (<-chan []byte, error) {
	return s.queues.receive(ctx, queue), nil
}

// Ping implements Store: a read transaction (a closed database fails).
func (s *Bolt) Ping(context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Name implements Store.
func (s *Bolt) Name() string { return "bolt " + s.path }

// Close implements Store.
func (s *Bolt) Close() error { return s.db.Close() }

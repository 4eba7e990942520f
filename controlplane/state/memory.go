package state

import (
	"context"
	"encoding/binary"
	"sync"
	"time"
)

// Memory is a Store in memory: nothing outlives the process (--state
// memory, tests). It is safe for concurrent use.
type Memory struct {
	bus    localBus
	queues localQueues
	leases localLeases

	mu     sync.Mutex // guards the fields below
	kinds  map[Kind]map[string]memRecord
	closed bool
	// fail, when set, makes every call fail with it (tests of a store
	// that is down).
	fail error
}

type memRecord struct {
	value   []byte
	expires time.Time // zero: never
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{kinds: map[Kind]map[string]memRecord{}} }

// SetFailure makes every later call fail with err (nil heals): a store
// that is down, for tests.
func (m *Memory) SetFailure(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// check returns the error a call must fail with. m.mu held.
func (m *Memory) check() error {
	if m.closed {
		return ErrClosed
	}
	return m.fail
}

func (m *Memory) live(kind Kind, key string, now time.Time) (memRecord, bool) {
	r, ok := m.kinds[kind][key]
	if ok && !r.expires.IsZero() && !now.Before(r.expires) {
		delete(m.kinds[kind], key)
		return memRecord{}, false
	}
	return r, ok
}

// Apply implements Store.
func (m *Memory) Apply(_ context.Context, changes []Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	now := time.Now()
	for _, c := range changes {
		if c.Value == nil {
			delete(m.kinds[c.Kind], c.Key)
			continue
		}
		if m.kinds[c.Kind] == nil {
			m.kinds[c.Kind] = map[string]memRecord{}
		}
		r := memRecord{value: append([]byte(nil), c.Value...)}
		if c.TTL > 0 {
			r.expires = now.Add(c.TTL)
		}
		m.kinds[c.Kind][c.Key] = r
	}
	return nil
}

// Load implements Store.
func (m *Memory) Load(_ context.Context, kind Kind) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	now := time.Now()
	if kind == Leases {
		return m.leases.load(now), nil
	}
	out := map[string][]byte{}
	for k := range m.kinds[kind] {
		if r, ok := m.live(kind, k, now); ok {
			out[k] = append([]byte(nil), r.value...)
		}
	}
	return out, nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, kind Kind, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, false, err
	}
	if kind == Leases {
		v, ok := m.leases.get(key, time.Now())
		return v, ok, nil
	}
	r, ok := m.live(kind, key, time.Now())
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), r.value...), true, nil
}

// PutIfAbsent implements Store.
func (m *Memory) PutIfAbsent(_ context.Context, kind Kind, key string, value []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	if r, ok := m.live(kind, key, time.Now()); ok {
		return append([]byte(nil), r.value...), nil
	}
	if m.kinds[kind] == nil {
		m.kinds[kind] = map[string]memRecord{}
	}
	m.kinds[kind][key] = memRecord{value: append([]byte(nil), value...)}
	return append([]byte(nil), value...), nil
}

// Advance implements Store.
func (m *Memory) Advance(_ context.Context, kind Kind, key string, n uint64, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return false, err
	}
	now := time.Now()
	if r, ok := m.live(kind, key, now); ok && len(r.value) == 8 && binary.BigEndian.Uint64(r.value) >= n {
		return false, nil
	}
	if m.kinds[kind] == nil {
		m.kinds[kind] = map[string]memRecord{}
	}
	v := binary.BigEndian.AppendUint64(nil, n)
	m.kinds[kind][key] = memRecord{value: v, expires: now.Add(ttl)}
	return true, nil
}

// Lease implements Store.
func (m *Memory) Lease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	err := m.check()
	m.mu.Unlock()
	if err != nil {
		return false, err
	}
	return m.leases.take(name, owner, ttl, time.Now()), nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, name, owner string) error {
	m.leases.release(name, owner)
	return nil
}

// Publish implements Store.
func (m *Memory) Publish(_ context.Context, channel string, msg []byte) error {
	m.mu.Lock()
	err := m.check()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.bus.publish(channel, msg)
	return nil
}

// Subscribe implements Store.
func (m *Memory) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	return m.bus.subscribe(ctx, channel), nil
}

// Push implements Store (within the process).
func (m *Memory) Push(_ context.Context, queue string, msg []byte, max int, _ time.Duration) error {
	m.mu.Lock()
	err := m.check()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.queues.push(queue, msg, max)
	return nil
}

// Receive implements Store.
func (m *Memory) Receive(ctx context.Context, queue string) (<-chan []byte, error) {
	return m.queues.receive(ctx, queue), nil
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.check()
}

// Name implements Store.
func (m *Memory) Name() string { return "memory" }

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

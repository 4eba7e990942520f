package state

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// commandCounter is a go-redis hook that counts the commands sent and the
// round trips (a pipeline is one).
type commandCounter struct {
	mu         sync.Mutex
	names      []string
	roundTrips int
}

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.names = append(h.names, cmd.Name())
		h.roundTrips++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		for _, c := range cmds {
			h.names = append(h.names, c.Name())
		}
		h.roundTrips++
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *commandCounter) reset() (names []string, roundTrips int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	names, roundTrips = h.names, h.roundTrips
	h.names, h.roundTrips = nil, 0
	return names, roundTrips
}

// redisBackends are the Redis stores of backends, each with a counter.
func redisBackends(t *testing.T) map[string]*Redis {
	t.Helper()
	mr := miniredis.RunT(t)
	urls := map[string]string{"miniredis": "redis://" + mr.Addr() + "/0"}
	if r := tryRedis(t); r != "" {
		urls["redis-server"] = r
	}
	out := map[string]*Redis{}
	for name, u := range urls {
		s, err := OpenRedis(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[name] = s
	}
	return out
}

// TestRedisApplyGroups pins what one batch costs on Redis: one round trip,
// and per kind one HSET for every record written and one HDEL for every
// one deleted, whatever the number of calls in it; and that the records
// are what the changes say, as a batch applied in order would leave them.
func TestRedisApplyGroups(t *testing.T) {
	ctx := context.Background()
	for name, s := range redisBackends(t) {
		t.Run(name, func(t *testing.T) {
			h := &commandCounter{}
			s.c.AddHook(h)
			if err := s.Ping(ctx); err != nil { // the connection's handshake
				t.Fatal(err)
			}
			h.reset()
			var seed []Change
			for i := range 50 {
				seed = append(seed, Change{Kind: Calls, Key: fmt.Sprint("old", i), Value: []byte("x")},
					Change{Kind: Sessions, Key: fmt.Sprint("old", i), Value: []byte("x")})
			}
			if err := s.Apply(ctx, seed); err != nil {
				t.Fatal(err)
			}
			names, trips := h.reset()
			if trips != 1 || len(names) != 2 {
				t.Fatalf("100 records of 2 kinds: %d round trips, commands %v; want 1, one hset per kind", trips, names)
			}
			// A Writer's batch: calls answered and ended, sessions, one
			// nonce (a key of its own, with its TTL).
			var batch []Change
			for i := range 50 {
				batch = append(batch, Change{Kind: Calls, Key: fmt.Sprint("old", i)},
					Change{Kind: Calls, Key: fmt.Sprint("new", i), Value: []byte(fmt.Sprint("v", i))},
					Change{Kind: Sessions, Key: fmt.Sprint("old", i)})
			}
			batch = append(batch, Change{Kind: Nonces, Key: "n", Value: []byte("1"), TTL: time.Minute})
			if err := s.Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			names, trips = h.reset()
			if trips != 1 || len(names) != 4 {
				t.Fatalf("a batch of 151 changes: %d round trips, commands %v; want 1 round trip, 4 commands (hdel, hset, hdel, set)", trips, names)
			}
			calls, err := s.Load(ctx, Calls)
			if err != nil || len(calls) != 50 || string(calls["new7"]) != "v7" {
				t.Fatalf("calls after the batch: %d records, new7=%q, %v; want the 50 new", len(calls), calls["new7"], err)
			}
			if sess, err := s.Load(ctx, Sessions); err != nil || len(sess) != 0 {
				t.Fatalf("sessions after the batch: %v, %v; want none", sess, err)
			}
			if v, ok, err := s.Get(ctx, Nonces, "n"); !ok || string(v) != "1" || err != nil {
				t.Fatalf("nonce after the batch: %q, %v, %v", v, ok, err)
			}
			// A batch that changes one key twice keeps its order.
			if err := s.Apply(ctx, []Change{{Kind: Calls, Key: "k", Value: []byte("a")}, {Kind: Calls, Key: "k"},
				{Kind: Calls, Key: "k", Value: []byte("b")}, {Kind: Calls, Key: "j"}}); err != nil {
				t.Fatal(err)
			}
			if v, ok, _ := s.Get(ctx, Calls, "k"); !ok || string(v) != "b" {
				t.Fatalf("k after put, delete, put: %q, %v; want b", v, ok)
			}
		})
	}
}

// TestRedisFlushInterval: a Writer on Redis batches as the embedded store
// does (a round trip per batch is a fixed cost on both sides).
func TestRedisFlushInterval(t *testing.T) {
	mr := miniredis.RunT(t)
	s, err := OpenRedis("redis://" + mr.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(WriterConfig{Store: s})
	defer w.Close()
	if w.cfg.FlushInterval != RedisFlushInterval {
		t.Fatalf("Writer interval on Redis %v, want %v", w.cfg.FlushInterval, RedisFlushInterval)
	}
}

// Writer.GetKnown on Redis: a record still the one the caller holds is
// not sent back; a changed or missing one is told apart.
func TestRedisGetKnown(t *testing.T) {
	ctx := context.Background()
	for name, s := range redisBackends(t) {
		t.Run(name, func(t *testing.T) {
			w := NewWriter(WriterConfig{Store: s})
			defer w.Close()
			mine := []byte(`[{"id":"c1"}]`)
			if v, ok, same, err := w.GetKnown(ctx, Calls, "u", mine); ok || same || v != nil || err != nil {
				t.Fatalf("missing record: %q, %v, %v, %v", v, ok, same, err)
			}
			w.Put(Calls, "u", mine)
			if _, ok, same, _ := w.GetKnown(ctx, Calls, "u", mine); !ok || !same {
				t.Fatalf("queued record: ok %v unchanged %v, want both", ok, same)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			h := &commandCounter{}
			s.c.AddHook(h)
			if v, ok, same, err := w.GetKnown(ctx, Calls, "u", mine); !ok || !same || v != nil || err != nil {
				t.Fatalf("stored record as written: %q, %v, %v, %v; want unchanged", v, ok, same, err)
			}
			if names, _ := h.reset(); !slices.Contains(names, "evalsha") && !slices.Contains(names, "eval") {
				t.Fatalf("commands %v: want the digest compared in Redis", names)
			}
			other := []byte(`[{"id":"c2"}]`)
			if err := s.Apply(ctx, []Change{{Kind: Calls, Key: "u", Value: other}}); err != nil { // a peer's write
				t.Fatal(err)
			}
			if v, ok, same, err := w.GetKnown(ctx, Calls, "u", mine); !ok || same || string(v) != string(other) || err != nil {
				t.Fatalf("record a peer rewrote: %q, %v, %v, %v; want the peer's", v, ok, same, err)
			}
			// Same length, other bytes.
			if v, _, same, _ := w.GetKnown(ctx, Calls, "u", []byte(`[{"id":"c3"}]`)); same || string(v) != string(other) {
				t.Fatalf("a record of the same length: %q, unchanged %v", v, same)
			}
		})
	}
}

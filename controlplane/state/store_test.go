package state

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// backends opens one store of each kind for a test: memory, bbolt in a
// temporary directory, miniredis, and a real redis-server (skipped when
// not installed).
func backends(t *testing.T) map[string]Store {
	t.Helper()
	out := map[string]Store{"memory": NewMemory()}
	b, err := Open("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out["bolt"] = b
	mr := miniredis.RunT(t)
	mrs, err := Open("redis://"+mr.Addr()+"/0", "")
	if err != nil {
		t.Fatal(err)
	}
	out["miniredis"] = mrs
	if r := tryRedis(t); r != "" {
		rs, err := Open(r, "")
		if err != nil {
			t.Fatal(err)
		}
		out["redis-server"] = rs
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.Close()
		}
	})
	return out
}

// tryRedis starts a redis-server when one is installed ("" otherwise, so
// that the other backends still run).
func tryRedis(t *testing.T) string {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") != "true" {
		t.Log("redis-server is not installed: its backend is not tested (scripts/install-test-deps.sh)")
		return ""
	}
	return statetest.StartRedis(t).URL
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			if err := s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			err := s.Apply(ctx, []Change{{Kind: Calls, Key: "a", Value: []byte("1")}, {Kind: Calls, Key: "b", Value: []byte("2")},
				{Kind: Bindings, Key: "a", Value: []byte("x")}, {Kind: Calls, Key: "b", Value: []byte("3")}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Load(ctx, Calls)
			if err != nil || len(m) != 2 || string(m["a"]) != "1" || string(m["b"]) != "3" {
				t.Fatalf("Load(calls) = %q, %v; want a=1 b=3", m, err)
			}
			if err := s.Apply(ctx, []Change{{Kind: Calls, Key: "a"}}); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := s.Get(ctx, Calls, "a"); ok || err != nil {
				t.Fatalf("Get(deleted) = %q, %v, %v", v, ok, err)
			}
			if v, ok, _ := s.Get(ctx, Bindings, "a"); !ok || string(v) != "x" {
				t.Fatalf("Get(bindings/a) = %q, %v: kinds must not mix", v, ok)
			}
			// PutIfAbsent: the first value wins.
			v1, err := s.PutIfAbsent(ctx, Secrets, "k", []byte("first"))
			if err != nil || string(v1) != "first" {
				t.Fatalf("PutIfAbsent = %q, %v", v1, err)
			}
			v2, _ := s.PutIfAbsent(ctx, Secrets, "k", []byte("second"))
			if string(v2) != "first" {
				t.Fatalf("second PutIfAbsent = %q, want first", v2)
			}
			// Advance: strictly increasing, once.
			for i, c := range []struct {
				n    uint64
				want bool
			}{{1, true}, {1, false}, {3, true}, {2, false}, {4, true}} {
				got, err := s.Advance(ctx, Nonces, "n1", c.n, time.Minute)
				if err != nil || got != c.want {
					t.Fatalf("step %d: Advance(%d) = %v, %v; want %v", i, c.n, got, err, c.want)
				}
			}
			// An expired counter starts again.
			if ok, _ := s.Advance(ctx, Nonces, "short", 5, 50*time.Millisecond); !ok {
				t.Fatal("Advance(short) refused")
			}
			if name == "miniredis" {
				return // miniredis's clock does not run by itself
			}
			time.Sleep(60 * time.Millisecond)
			if ok, _ := s.Advance(ctx, Nonces, "short", 1, time.Minute); !ok {
				t.Fatal("an expired counter still refused a lower count")
			}
		})
	}
}

func TestLeasesAndPubSub(t *testing.T) {
	ctx := context.Background()
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ok, err := s.Lease(ctx, "ws/1", "a", time.Second)
			if err != nil || !ok {
				t.Fatalf("Lease a = %v, %v", ok, err)
			}
			if ok, _ := s.Lease(ctx, "ws/1", "b", time.Second); ok {
				t.Fatal("b took a lease a holds")
			}
			if ok, _ := s.Lease(ctx, "ws/1", "a", time.Second); !ok {
				t.Fatal("a could not renew its lease")
			}
			if err := s.Release(ctx, "ws/1", "b"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.Lease(ctx, "ws/1", "b", time.Second); ok {
				t.Fatal("b's release freed a's lease")
			}
			s.Release(ctx, "ws/1", "a")
			if ok, _ := s.Lease(ctx, "ws/1", "b", time.Second); !ok {
				t.Fatal("b could not take a released lease")
			}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := s.Subscribe(sctx, "flows")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Publish(ctx, "flows", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-ch:
				if string(m) != "hello" {
					t.Fatalf("got %q", m)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no message")
			}
		})
	}
}

func TestBoltIsExclusiveAndPrivate(t *testing.T) {
	dir := t.TempDir()
	a, err := Open("", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = Open("", dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of the same data dir: %v, want ErrLocked", err)
	}
	st, err := osStat(filepath.Join(dir, FileName))
	if err != nil || st&0o077 != 0 {
		t.Fatalf("state file mode %o, %v: want 0600", st, err)
	}
}

func TestSpecs(t *testing.T) {
	for _, c := range []struct {
		spec string
		ok   bool
	}{{"", true}, {"memory", true}, {"embedded", true}, {"redis://127.0.0.1:6379/0", true},
		{"rediss://:pw@redis.example:6380/2", true}, {"redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/1", true},
		{"redis+sentinel://10.0.0.1:26379", false}, {"postgres://x", false}, {"redis://h:p/x", false}} {
		if err := ValidSpec(c.spec); (err == nil) != c.ok {
			t.Errorf("ValidSpec(%q) = %v, want ok=%v", c.spec, err, c.ok)
		}
	}
	if r := redact("rediss://user:secret@h:1/0"); r != "rediss://user:xxx@h:1/0" {
		t.Errorf("redact = %q", r)
	}
}

// Queues: a reader gets what was pushed after it started, in order, each
// once, also what was pushed while it was not reading (a slow reader
// loses nothing); what was pushed before it started is not delivered; a
// queue keeps its last max messages.
func TestStoreQueues(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := s.Push(ctx, "inbox/a", []byte("before"), 100, time.Minute); err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithCancel(ctx)
			in, err := s.Receive(rctx, "inbox/a")
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if err := s.Push(ctx, "inbox/a", []byte{byte('0' + i)}, 100, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Push(ctx, "inbox/b", []byte("other queue"), 100, time.Minute); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				select {
				case m := <-in:
					if string(m) != string(rune('0'+i)) {
						t.Fatalf("message %d: %q", i, m)
					}
				case <-ctx.Done():
					t.Fatalf("message %d not received", i)
				}
			}
			rcancel()
			for range in { // closes once the reader stops
			}
			// Bounded: a queue keeps its last max (roughly, on Redis).
			for i := range 300 {
				if err := s.Push(ctx, "inbox/c", []byte{byte(i)}, 10, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			if q, ok := s.(*Redis); ok {
				if n, err := q.c.XLen(ctx, queueKey("inbox/c")).Result(); err != nil || n > 200 {
					t.Fatalf("queue of max 10 holds %d after 300 pushes (%v)", n, err)
				}
				if ttl, err := q.c.PTTL(ctx, queueKey("inbox/c")).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
					t.Fatalf("queue's expiry %v (%v)", ttl, err)
				}
			}
		})
	}
}

package state

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// A subscription whose connection Redis kills (CLIENT KILL TYPE pubsub,
// as a restart or a network cut does) is made again by the client, and
// the subscriber gets a gap mark (nil) before the messages that follow:
// what was published meanwhile is lost, and it knows to catch up.
func TestRedisSubscriptionGapMark(t *testing.T) {
	rd := statetest.StartRedis(t)
	s, err := OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := s.Subscribe(ctx, "bindings")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, "bindings", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if m := <-ch; string(m) != "one" {
		t.Fatalf("got %q, want one (no gap mark at the first subscription)", m)
	}
	admin := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer admin.Close()
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub: %d %v", n, err)
	}
	// Published until the subscription is back: the first that arrives
	// comes after the gap mark.
	for sawGap := false; ; {
		if err := s.Publish(ctx, "bindings", []byte("two")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-ch:
			if m == nil {
				sawGap = true
				continue
			}
			if string(m) != "two" {
				t.Fatalf("got %q", m)
			}
			if !sawGap {
				t.Fatal("a message after the re-subscription came without the gap mark before it")
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the subscription did not come back")
		}
	}
}

// A queue's reader cut off from Redis (its connections closed, new ones
// refused) gets, once back, what was pushed meanwhile, in order, each
// once, and then what follows: nothing is lost in the gap and nothing
// comes twice (the reader goes on from the last entry it read).
func TestRedisQueueAcrossCut(t *testing.T) {
	rd := statetest.StartRedis(t)
	px := statetest.NewCutProxy(t, rd.Addr)
	reader, err := OpenRedis(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	writer, err := OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := reader.Receive(ctx, "flows/b")
	if err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		select {
		case m := <-in:
			if string(m) != want {
				t.Fatalf("got %q, want %q", m, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q not received", want)
		}
	}
	if err := writer.Push(ctx, "flows/b", []byte("one"), 100, time.Minute); err != nil {
		t.Fatal(err)
	}
	next("one")
	px.Cut()
	for _, m := range []string{"two", "three"} {
		if err := writer.Push(ctx, "flows/b", []byte(m), 100, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	px.Restore()
	next("two")
	next("three")
	if err := writer.Push(ctx, "flows/b", []byte("four"), 100, time.Minute); err != nil {
		t.Fatal(err)
	}
	next("four") // not "two" or "three" again
}

func TestStreamIDLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1-0", "2-0", true},
		{"2-0", "1-0", false},
		{"5-1", "5-2", true},
		{"5-2", "5-2", false},
		{"10-0", "9-5", false},
		{"0-0", "1765000000000-3", true},
	} {
		if got := streamIDLess(tc.a, tc.b); got != tc.want {
			t.Errorf("streamIDLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

// A queue's reader whose Redis came back empty reads the queue made
// again from its start: what is pushed after the restart arrives.
func TestRedisQueueAfterRestart(t *testing.T) {
	rd := statetest.StartRedis(t)
	s, err := OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := s.Receive(ctx, "flows/r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Push(ctx, "flows/r", []byte("before"), 100, time.Minute); err != nil {
		t.Fatal(err)
	}
	if m := <-in; string(m) != "before" {
		t.Fatalf("got %q", m)
	}
	rd.Restart()
	// Pushed until it goes through (the client reconnects), then read.
	for ctx.Err() == nil && s.Push(ctx, "flows/r", []byte("after"), 100, time.Minute) != nil {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case m := <-in:
		if string(m) != "after" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("nothing read after the restart")
	}
}

package messaging

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := NewLimiter(6, 3) // a token every 10 s, 3 at once
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("alice", now); !ok {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("alice", now)
	if ok || wait != 10*time.Second {
		t.Fatalf("past the burst: %v, retry after %v; want refused, 10s", ok, wait)
	}
	if ok, _ := l.Allow("bob", now); !ok {
		t.Fatal("bob pays for alice")
	}
	if ok, _ := l.Allow("alice", now.Add(9*time.Second)); ok {
		t.Fatal("a token before its time")
	}
	if ok, _ := l.Allow("alice", now.Add(11*time.Second)); !ok {
		t.Fatal("no token after 10 s")
	}
	// Users who stopped sending are forgotten: the table stays bounded.
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprintf("u%d", i), now)
	}
	l.Allow("late", now.Add(time.Minute))
	if n := l.tracked(); n > 2 {
		t.Fatalf("%d users tracked a minute later, want the idle ones forgotten", n)
	}
	var none *Limiter
	if ok, _ := none.Allow("x", now); !ok || NewLimiter(0, 5) != nil {
		t.Fatal("no limit refused")
	}
}

package portalloc

import (
	"errors"
	"sync"
	"testing"
)

func TestRangePairs(t *testing.T) {
	for _, tt := range []struct {
		r    Range
		want int
	}{
		{Range{40000, 40001}, 1},
		{Range{40000, 40000}, 0},
		{Range{40001, 40004}, 1}, // 40002-40003; 40001 and 40004 are halves
		{Range{40000, 49999}, 5000},
		{Range{5, 4}, 0},
	} {
		if got := tt.r.Pairs(); got != tt.want {
			t.Errorf("%v.Pairs() = %d, want %d", tt.r, got, tt.want)
		}
	}
}

func TestAcquireReleaseNextFit(t *testing.T) {
	a := New(Range{40000, 40005})
	ok := func(uint16) error { return nil }
	p1, _ := a.Acquire(ok)
	p2, _ := a.Acquire(ok)
	if p1 != 40000 || p2 != 40002 {
		t.Fatalf("got %d %d", p1, p2)
	}
	a.Release(p1)
	p3, _ := a.Acquire(ok)
	if p3 != 40004 {
		t.Fatalf("next-fit: got %d, want 40004 (a released pair is not reused at once)", p3)
	}
	p4, _ := a.Acquire(ok)
	if p4 != 40000 {
		t.Fatalf("wrap: got %d, want 40000", p4)
	}
	if _, err := a.Acquire(ok); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full range: %v", err)
	}
	if a.InUse() != 3 || a.Capacity() != 3 {
		t.Fatalf("InUse %d Capacity %d", a.InUse(), a.Capacity())
	}
}

func TestAcquireSkipsPortsThatFailToBind(t *testing.T) {
	a := New(Range{40000, 40005})
	busy := errors.New("in use")
	p, err := a.Acquire(func(p uint16) error {
		if p != 40004 {
			return busy
		}
		return nil
	})
	if err != nil || p != 40004 {
		t.Fatalf("got %d %v", p, err)
	}
	if a.InUse() != 1 {
		t.Fatalf("failed candidates stayed reserved: InUse %d", a.InUse())
	}
	_, err = a.Acquire(func(uint16) error { return busy })
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("got %v", err)
	}
}

func TestConcurrentAcquireIsUnique(t *testing.T) {
	a := New(Range{40000, 40199})
	var mu sync.Mutex
	seen := map[uint16]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				p, err := a.Acquire(func(uint16) error { return nil })
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[p] {
					t.Errorf("port %d handed out twice", p)
				}
				seen[p] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if a.InUse() != 100 {
		t.Fatalf("InUse %d", a.InUse())
	}
}

func TestParseRange(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Range
		ok   bool
	}{
		{"40000-49999", Range{40000, 49999}, true},
		{"5060", Range{5060, 5060}, true},
		{" 1 - 2 ", Range{1, 2}, true},
		{"0-10", Range{}, false},
		{"10-1", Range{}, false},
		{"1-70000", Range{}, false},
		{"x", Range{}, false},
	} {
		got, err := ParseRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v", tt.in, got, err)
		}
	}
	if b, _ := (Range{40000, 40009}).MarshalText(); string(b) != "40000-40009" {
		t.Errorf("MarshalText = %q", b)
	}
}

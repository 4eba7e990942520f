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

func TestAcquireRelease(t *testing.T) {
	a := New(Range{40000, 40005})
	ok := func(uint16) error { return nil }
	seen := map[uint16]bool{}
	for i := 0; i < 3; i++ {
		p, err := a.Acquire(ok)
		if err != nil || p < 40000 || p > 40004 || p%2 != 0 || seen[p] {
			t.Fatalf("acquire %d: %d, %v (seen %v)", i, p, err, seen)
		}
		seen[p] = true
	}
	if _, err := a.Acquire(ok); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full range: %v", err)
	}
	if a.InUse() != 3 || a.Capacity() != 3 {
		t.Fatalf("InUse %d Capacity %d", a.InUse(), a.Capacity())
	}
	a.Release(40002)
	a.Release(40002) // not held any more: no-op
	a.Release(39998) // below the range: no-op
	if a.InUse() != 2 {
		t.Fatalf("InUse %d after one release", a.InUse())
	}
	// The only pair left is the one that is cooling: it is handed out
	// rather than nothing.
	if p, err := a.Acquire(ok); err != nil || p != 40002 {
		t.Fatalf("got %d, %v; want the released 40002", p, err)
	}
}

// TestAcquireIsUnpredictable: pairs are drawn at random, so the port of
// the next call cannot be guessed from the last one (ports handed out in
// order let an attacker spray just ahead of them).
func TestAcquireIsUnpredictable(t *testing.T) {
	const pairs = 1000
	ok := func(uint16) error { return nil }
	order := func() []uint16 {
		a := New(Range{40000, 40000 + 2*pairs - 1})
		var out []uint16
		for i := 0; i < 50; i++ {
			p, err := a.Acquire(ok)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	a, b := order(), order()
	ascending, same, next := 0, 0, 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
		if i > 0 && a[i] > a[i-1] {
			ascending++
		}
		if i > 0 && a[i] == a[i-1]+2 {
			next++
		}
	}
	// Random draws: about half the steps go up, almost none to the next
	// pair, and two allocators agree almost nowhere (each bound is many
	// standard deviations away from what chance gives).
	if ascending > 40 || next > 5 || same > 5 {
		t.Fatalf("predictable order: %d of 49 steps ascending, %d to the next pair, %d of 50 equal between two allocators: %v", ascending, next, same, a)
	}
}

// TestReleasedPairCoolsDown: a released pair is not handed out again while
// other pairs are free, so late packets of the old call reach no new call.
func TestReleasedPairCoolsDown(t *testing.T) {
	a := New(Range{40000, 40399}) // 200 pairs, 50 cool down
	ok := func(uint16) error { return nil }
	p, _ := a.Acquire(ok)
	a.Release(p)
	for i := 0; i < 150; i++ {
		q, err := a.Acquire(ok)
		if err != nil {
			t.Fatal(err)
		}
		if q == p {
			t.Fatalf("released pair %d handed out again after %d acquisitions with %d pairs free", p, i, 199-i)
		}
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

// AcquirePort takes the named pair when it is free (or cooling), refuses it
// when it is held or outside the range, and gives it back when try fails.
func TestAcquirePort(t *testing.T) {
	a := New(Range{First: 40000, Last: 40009}) // 5 pairs
	ok := func(uint16) error { return nil }
	if err := a.AcquirePort(40004, ok); err != nil {
		t.Fatal(err)
	}
	if err := a.AcquirePort(40004, ok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the same pair twice: %v", err)
	}
	for _, p := range []uint16{40005, 39998, 40010} {
		if err := a.AcquirePort(p, ok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("port %d: %v, want ErrUnavailable", p, err)
		}
	}
	a.Release(40004) // cooling
	if err := a.AcquirePort(40004, ok); err != nil {
		t.Fatalf("a cooling pair: %v", err)
	}
	boom := errors.New("bind")
	if err := a.AcquirePort(40006, func(uint16) error { return boom }); err != boom {
		t.Fatal(err)
	}
	if a.InUse() != 1 {
		t.Fatalf("in use %d, want 1", a.InUse())
	}
	if err := a.AcquirePort(40006, ok); err != nil {
		t.Fatalf("a pair whose bind failed is free again: %v", err)
	}
	seen := map[uint16]bool{}
	for range 3 {
		p, err := a.Acquire(ok)
		if err != nil || p == 40004 || p == 40006 || seen[p] {
			t.Fatalf("Acquire gave %d %v after AcquirePort", p, err)
		}
		seen[p] = true
	}
}

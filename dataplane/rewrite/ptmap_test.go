package rewrite

import "testing"

func TestPTMap(t *testing.T) {
	var m PTMap
	for pt := range 256 {
		if _, ok := m.Lookup(uint8(pt)); ok {
			t.Fatalf("zero PTMap maps %d", pt)
		}
	}
	if err := m.Set(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(111, 109); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(101, 127); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		in, out uint8
		ok      bool
	}{{0, 0, true}, {111, 109, true}, {101, 127, true}, {8, 0, false}, {109, 0, false}, {128 + 111, 0, false}, {255, 0, false}} {
		out, ok := m.Lookup(tt.in)
		if out != tt.out || ok != tt.ok {
			t.Errorf("Lookup(%d) = %d, %v, want %d, %v", tt.in, out, ok, tt.out, tt.ok)
		}
	}
	if err := m.Set(128, 0); err != ErrPayloadType {
		t.Errorf("Set(128, 0) = %v", err)
	}
	if err := m.Set(0, 128); err != ErrPayloadType {
		t.Errorf("Set(0, 128) = %v", err)
	}
	if out, _ := m.Lookup(0); out != 0 {
		t.Errorf("failed Set changed the map")
	}
	m.Delete(111)
	m.Delete(200)
	if _, ok := m.Lookup(111); ok {
		t.Errorf("Delete(111) left it mapped")
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = m.Lookup(101) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}

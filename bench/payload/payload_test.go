package payload

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{HeaderLen, HeaderLen + 3, OpusSize, PCMUSize} {
		p := make([]byte, size)
		Write(p, 7, 123456, 987654321)
		flow, seq, nanos, err := Check(p, size)
		if err != nil || flow != 7 || seq != 123456 || nanos != 987654321 {
			t.Fatalf("size %d: %d %d %d %v", size, flow, seq, nanos, err)
		}
	}
}

func TestEveryByteIsChecked(t *testing.T) {
	p := make([]byte, PCMUSize)
	Write(p, 3, 9, 42)
	for i := range p {
		for bit := 0; bit < 8; bit++ {
			p[i] ^= 1 << bit
			if _, _, _, err := Check(p, PCMUSize); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
			p[i] ^= 1 << bit
		}
	}
	if _, _, _, err := Check(p[:PCMUSize-1], PCMUSize); err == nil {
		t.Fatal("truncated payload passed")
	}
	if _, _, _, err := Check(p[:10], PCMUSize); err != ErrShort {
		t.Fatalf("short payload: %v", err)
	}
}

func TestPayloadsDiffer(t *testing.T) {
	a, b := make([]byte, 64), make([]byte, 64)
	Write(a, 1, 1, 0)
	Write(b, 1, 2, 0)
	if string(a[HeaderLen:]) == string(b[HeaderLen:]) {
		t.Fatal("consecutive packets have the same filler")
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	p := make([]byte, PCMUSize)
	Write(p, 1, 2, 3)
	if n := testing.AllocsPerRun(100, func() { Check(p, PCMUSize) }); n != 0 {
		t.Fatalf("Check allocates %v times", n)
	}
}

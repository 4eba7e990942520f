package demux

import "testing"

func TestClassify(t *testing.T) {
	pad := func(b []byte, n int) []byte { return append(b, make([]byte, n-len(b))...) }
	tests := []struct {
		name string
		in   []byte
		want Class
	}{
		{"empty", nil, Unknown},
		{"short", []byte{0x80, 0x00, 0, 0}, Unknown},
		{"stun binding request", pad([]byte{0x00, 0x01}, 20), STUN},
		{"stun too short", pad([]byte{0x00, 0x01}, 19), Unknown},
		{"dtls handshake", pad([]byte{22, 0xfe, 0xfd}, 13), DTLS},
		{"dtls lowest", pad([]byte{20}, 13), DTLS},
		{"dtls highest", pad([]byte{63}, 13), DTLS},
		{"dtls too short", pad([]byte{22}, 12), Unknown},
		{"zrtp", pad([]byte{16}, 20), Unknown},
		{"turn channel", pad([]byte{64}, 20), Unknown},
		{"rtp pcmu", pad([]byte{0x80, 0x00}, 12), RTP},
		{"rtp marker opus", pad([]byte{0x80, 0x80 | 111}, 12), RTP},
		{"rtp too short", pad([]byte{0x80, 0x00}, 11), Unknown},
		{"rtcp sr", pad([]byte{0x80, 200}, 28), RTCP},
		{"rtcp empty rr", pad([]byte{0x80, 201}, 8), RTCP},
		{"rtcp psfb", pad([]byte{0x81, 206}, 12), RTCP},
		{"rtcp range low", pad([]byte{0x80, 192}, 8), RTCP},
		{"rtcp range high", pad([]byte{0x80, 223}, 8), RTCP},
		{"rtp pt 96 with marker is 224", pad([]byte{0x80, 224}, 12), RTP},
		{"first byte 192", pad([]byte{192, 0}, 12), Unknown},
	}
	for _, tt := range tests {
		if got := Classify(tt.in); got != tt.want {
			t.Errorf("%s: Classify(% x) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	b := make([]byte, 172)
	b[0] = 0x80
	if n := testing.AllocsPerRun(100, func() { _ = Classify(b) }); n != 0 {
		t.Fatalf("Classify allocates %v times", n)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x80, 200, 0, 6, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Classify(b)
		if c != Unknown && len(b) < minRTCP {
			t.Fatalf("classified %d bytes as %v", len(b), c)
		}
		_ = c.String()
	})
}

func BenchmarkClassify(b *testing.B) {
	pkt := make([]byte, 172)
	pkt[0] = 0x80
	b.ReportAllocs()
	for b.Loop() {
		_ = Classify(pkt)
	}
}

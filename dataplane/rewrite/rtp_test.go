package rewrite

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pion/rtp"
)

// marshalRTP builds a packet with pion/rtp, the reference implementation.
func marshalRTP(t testing.TB, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRTP(t *testing.T) {
	payload := bytes.Repeat([]byte{0xd5}, 160)
	base := func() *rtp.Packet {
		return &rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         true,
				PayloadType:    8,
				SequenceNumber: 65535,
				Timestamp:      0xfffffff0,
				SSRC:           0xdeadbeef,
			},
			Payload: payload,
		}
	}
	tests := []struct {
		name       string
		pkt        func() *rtp.Packet
		headerLen  int
		paddingLen int
	}{
		{"plain", base, 12, 0},
		{"csrcs", func() *rtp.Packet {
			p := base()
			p.CSRC = []uint32{1, 2, 3}
			return p
		}, 24, 0},
		{"one-byte extension", func() *rtp.Packet {
			p := base()
			p.Extension = true
			p.ExtensionProfile = 0xBEDE
			if err := p.SetExtension(1, []byte{1, 2, 3}); err != nil {
				panic(err)
			}
			return p
		}, 20, 0},
		{"two-byte extension and csrc", func() *rtp.Packet {
			p := base()
			p.CSRC = []uint32{7}
			p.Extension = true
			p.ExtensionProfile = 0x1000
			if err := p.SetExtension(1, make([]byte, 9)); err != nil {
				panic(err)
			}
			return p
		}, 12 + 4 + 4 + 12, 0},
		{"padding", func() *rtp.Packet {
			p := base()
			p.Padding = true
			p.PaddingSize = 4
			return p
		}, 12, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := tt.pkt()
			b := marshalRTP(t, ref)
			var want rtp.Packet
			if err := want.Unmarshal(b); err != nil {
				t.Fatal(err)
			}
			h, err := ParseRTP(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.Marker != want.Marker || h.PayloadType != want.PayloadType ||
				h.Sequence != want.SequenceNumber || h.Timestamp != want.Timestamp ||
				h.SSRC != want.SSRC || int(h.CSRCCount) != len(want.CSRC) ||
				h.Extension != want.Extension || h.Padding != want.Padding {
				t.Errorf("ParseRTP = %+v, pion = %+v", h, want.Header)
			}
			if want.Extension && h.ExtensionProfile != want.ExtensionProfile {
				t.Errorf("ExtensionProfile = %#x, want %#x", h.ExtensionProfile, want.ExtensionProfile)
			}
			if h.HeaderLen != tt.headerLen || h.PaddingLen != tt.paddingLen {
				t.Errorf("HeaderLen, PaddingLen = %d, %d, want %d, %d", h.HeaderLen, h.PaddingLen, tt.headerLen, tt.paddingLen)
			}
			if !bytes.Equal(h.Payload(b), want.Payload) {
				t.Errorf("Payload differs: got %d bytes, want %d", len(h.Payload(b)), len(want.Payload))
			}
		})
	}
}

func TestParseRTPPaddingOnly(t *testing.T) {
	b := []byte{0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 4}
	h, err := ParseRTP(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.PayloadLen != 0 || h.PaddingLen != 4 || h.HeaderLen != 12 {
		t.Fatalf("got %+v", h)
	}
}

func TestParseRTPRejects(t *testing.T) {
	hdr := func(first byte, tail ...byte) []byte {
		return append([]byte{first, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, tail...)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTooShort},
		{"eleven bytes", hdr(0x80)[:11], ErrTooShort},
		{"version 1", hdr(0x40), ErrVersion},
		{"version 0", hdr(0x00), ErrVersion},
		{"version 3", hdr(0xc0), ErrVersion},
		{"csrc overrun", hdr(0x82, 0, 0, 0, 1), ErrCSRCOverrun},
		{"csrc count 15 no room", hdr(0x8f), ErrCSRCOverrun},
		{"extension header missing", hdr(0x90, 0xbe, 0xde), ErrExtensionOverrun},
		{"extension length overrun", hdr(0x90, 0xbe, 0xde, 0, 2, 0, 0, 0, 0), ErrExtensionOverrun},
		{"padding without room", hdr(0xa0), ErrPadding},
		{"padding count zero", hdr(0xa0, 1, 2, 0), ErrPadding},
		{"padding count too large", hdr(0xa0, 1, 2, 4), ErrPadding},
		{"padding eats extension", hdr(0xb0, 0xbe, 0xde, 0, 0, 9, 9, 9, 5), ErrPadding},
	}
	for _, tt := range tests {
		if _, err := ParseRTP(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseRTP(% x) error = %v, want %v", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestParseRTPAllocs(t *testing.T) {
	b := g711Packet(1, 160, 0x1234)
	if n := testing.AllocsPerRun(1000, func() { _, _ = ParseRTP(b) }); n != 0 {
		t.Fatalf("ParseRTP allocates %v times", n)
	}
}

// g711Packet returns a 172-byte PCMU packet: 12-byte header, 20 ms payload.
func g711Packet(seq uint16, ts, ssrc uint32) []byte {
	b := make([]byte, 172)
	b[0] = 0x80
	b[2], b[3] = byte(seq>>8), byte(seq)
	b[4], b[5], b[6], b[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	b[8], b[9], b[10], b[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
	for i := 12; i < len(b); i++ {
		b[i] = 0xff
	}
	return b
}

func FuzzParseRTP(f *testing.F) {
	f.Add(g711Packet(1, 2, 3))
	f.Add([]byte{0x92, 0x80 | 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 8, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0, 1, 2})
	f.Add([]byte{0xa0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseRTP(b)
		var ref rtp.Packet
		refErr := ref.Unmarshal(b)
		if err != nil {
			if h != (Header{}) {
				t.Fatalf("error %v with non-zero header %+v", err, h)
			}
			return
		}
		if h.HeaderLen+h.PayloadLen+h.PaddingLen != len(b) || h.HeaderLen < rtpHeaderLen || h.PayloadLen < 0 {
			t.Fatalf("lengths %d+%d+%d do not add up to %d", h.HeaderLen, h.PayloadLen, h.PaddingLen, len(b))
		}
		_ = h.Payload(b)
		// Whatever ParseRTP accepts, pion/rtp accepts too, and they agree
		// on the fields. The exception is the inside of a header extension:
		// pion parses RFC 8285 elements, which a relay passes through
		// untouched, so only the extension's own length is checked here.
		if refErr != nil {
			if h.Extension {
				return
			}
			t.Fatalf("ParseRTP accepted what pion rejects (%v): % x", refErr, b)
		}
		if ref.SequenceNumber != h.Sequence || ref.Timestamp != h.Timestamp || ref.SSRC != h.SSRC ||
			ref.PayloadType != h.PayloadType || ref.Marker != h.Marker || len(ref.CSRC) != int(h.CSRCCount) {
			t.Fatalf("ParseRTP %+v disagrees with pion %+v", h, ref.Header)
		}
		if len(ref.Payload) != h.PayloadLen {
			t.Fatalf("payload length %d, pion %d", h.PayloadLen, len(ref.Payload))
		}
	})
}

func BenchmarkParseRTP(b *testing.B) {
	pkt := g711Packet(1, 160, 0x1234)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseRTP(pkt)
	}
}

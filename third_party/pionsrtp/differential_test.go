package srtp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	upstream "github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/internal/racecheck"
)

// These tests pin the fork to upstream pion/srtp v3.1.3: the same keys and
// packets must give the same bytes when protecting, and the same output or
// the same kind of failure when unprotecting, whatever the packets (a
// forged SSRC, a flipped bit, a replay, a truncation, a sequence number
// that wraps).

// diffProfiles are the profiles the fork is compared on.
var diffProfiles = []ProtectionProfile{
	ProtectionProfileAes128CmHmacSha1_80,
	ProtectionProfileAes128CmHmacSha1_32,
	ProtectionProfileAes256CmHmacSha1_80,
	ProtectionProfileNullHmacSha1_80,
	ProtectionProfileAeadAes128Gcm,
	ProtectionProfileAeadAes256Gcm,
}

// outcome is what unprotecting a packet gave, as a caller can tell.
func outcome(out []byte, err error) string {
	switch {
	case err == nil:
		return "ok:" + string(out)
	case errors.Is(err, ErrFailedToVerifyAuthTag):
		return "auth"
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	if err.Error() == "duplicated packet" {
		return "replay"
	}
	return "error"
}

// diffPair is the same direction of a session in upstream and the fork.
type diffPair struct {
	upEnc, upDec *upstream.Context
	enc, dec     *Context
}

func newDiffPair(tb testing.TB, profile ProtectionProfile, r *rand.Rand) *diffPair {
	tb.Helper()
	kl, err := profile.KeyLen()
	if err != nil {
		tb.Fatal(err)
	}
	sl, err := profile.SaltLen()
	if err != nil {
		tb.Fatal(err)
	}
	key, salt := make([]byte, kl), make([]byte, sl)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	for i := range salt {
		salt[i] = byte(r.Uint32())
	}
	p := &diffPair{}
	if p.upEnc, err = upstream.CreateContext(key, salt, profile); err != nil {
		tb.Fatal(err)
	}
	if p.upDec, err = upstream.CreateContext(key, salt, profile, upstream.SRTPReplayProtection(64), upstream.SRTCPReplayProtection(64)); err != nil {
		tb.Fatal(err)
	}
	if p.enc, err = CreateContext(key, salt, profile); err != nil {
		tb.Fatal(err)
	}
	if p.dec, err = CreateContext(key, salt, profile, SRTPReplayProtection(64), SRTCPReplayProtection(64)); err != nil {
		tb.Fatal(err)
	}
	return p
}

// script drives both implementations with operations read from b (a
// fuzzer's input, or random bytes) and fails on the first difference.
type script struct {
	b []byte
}

func (s *script) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *script) u16() uint16 { return uint16(s.byte())<<8 | uint16(s.byte()) }

// rtpPacket builds an RTP packet from the script: header fields, CSRCs,
// an RFC 8285 extension, padding, a payload.
func (s *script) rtpPacket(ssrcs []uint32, seq uint16) []byte {
	flags := s.byte()
	h := rtp.Header{
		Version:        2,
		Marker:         flags&1 != 0,
		PayloadType:    s.byte() & 0x7f,
		SequenceNumber: seq,
		Timestamp:      uint32(s.u16()) << 8,
		SSRC:           ssrcs[int(flags>>1)%len(ssrcs)],
	}
	for i := 0; i < int(flags>>4)%3; i++ {
		h.CSRC = append(h.CSRC, uint32(s.u16()))
	}
	if flags&0x08 != 0 {
		if err := h.SetExtension(1, []byte{s.byte(), s.byte()}); err != nil {
			panic(err)
		}
	}
	payload := make([]byte, int(s.byte())+int(s.byte()&3)*64)
	for i := range payload {
		payload[i] = byte(i) ^ flags
	}
	pkt := rtp.Packet{Header: h, Payload: payload}
	b, err := pkt.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// rtcpPacket builds a receiver report (with blocks from the script).
func (s *script) rtcpPacket(ssrcs []uint32) []byte {
	rr := rtcp.ReceiverReport{SSRC: ssrcs[int(s.byte())%len(ssrcs)]}
	for i := 0; i < int(s.byte())%3; i++ {
		rr.Reports = append(rr.Reports, rtcp.ReceptionReport{SSRC: uint32(s.u16()), LastSequenceNumber: uint32(s.u16())})
	}
	b, err := rr.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// mutate damages a protected packet as an attacker or a bad network would.
func (s *script) mutate(pkt []byte) []byte {
	pkt = bytes.Clone(pkt)
	switch op := s.byte() % 8; {
	case op == 0 && len(pkt) > 0: // flip a bit anywhere
		i := int(s.u16()) % len(pkt)
		pkt[i] ^= 1 << (s.byte() % 8)
	case op == 1: // truncate
		pkt = pkt[:int(s.u16())%(len(pkt)+1)]
	case op == 2 && len(pkt) >= 12: // forge the SSRC
		binary.BigEndian.PutUint32(pkt[8:], uint32(s.u16())<<16|uint32(s.u16()))
	case op == 3 && len(pkt) >= 4: // another sequence number
		binary.BigEndian.PutUint16(pkt[2:], s.u16())
	}
	return pkt
}

// run compares the two implementations over the script for profile.
func (s *script) run(tb testing.TB, profile ProtectionProfile, r *rand.Rand) {
	tb.Helper()
	p := newDiffPair(tb, profile, r)
	ssrcs := []uint32{uint32(s.u16())<<16 | uint32(s.u16()), 0x1234, uint32(s.u16())}
	seq := s.u16()
	if seq&1 == 0 { // start near the wrap half the time
		seq = 65535 - seq%300
	}
	var sent [][]byte
	var hUp, hFork rtp.Header
	var cUp, cFork rtcp.Header
	for step := 0; len(s.b) > 0 && step < 400; step++ {
		op := s.byte() % 10
		switch {
		case op < 5: // protect an RTP packet, unprotect it (in place, as the relay does)
			seq += uint16(s.byte()%4) - 1 // repeats, gaps, and back steps; wraps through 65535
			pkt := s.rtpPacket(ssrcs, seq)
			up, err1 := p.upEnc.EncryptRTP(nil, pkt, &hUp)
			buf := make([]byte, len(pkt), len(pkt)+32)
			copy(buf, pkt)
			fork, err2 := p.enc.EncryptRTP(buf[:0], buf, &hFork)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
				tb.Fatalf("step %d: EncryptRTP differs: upstream %x (%v), fork %x (%v)", step, up, err1, fork, err2)
			}
			if err1 != nil {
				continue
			}
			sent = append(sent, up)
			s.unprotectRTP(tb, p, step, up, &hUp, &hFork)
		case op < 7 && len(sent) > 0: // replay or damage an earlier packet
			old := sent[int(s.byte())%len(sent)]
			if op == 6 {
				old = s.mutate(old)
			}
			s.unprotectRTP(tb, p, step, old, &hUp, &hFork)
		case op == 7: // RTCP both ways
			pkt := s.rtcpPacket(ssrcs)
			up, err1 := p.upEnc.EncryptRTCP(nil, pkt, &cUp)
			fork, err2 := p.enc.EncryptRTCP(nil, pkt, &cFork)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
				tb.Fatalf("step %d: EncryptRTCP differs: upstream %x (%v), fork %x (%v)", step, up, err1, fork, err2)
			}
			if err1 != nil {
				continue
			}
			if s.byte()%2 == 0 {
				up = s.mutate(up)
			}
			o1 := outcome(p.upDec.DecryptRTCP(nil, up, &cUp))
			o2 := outcome(p.dec.DecryptRTCP(nil, bytes.Clone(up), &cFork))
			if o1 != o2 {
				tb.Fatalf("step %d: DecryptRTCP of %x: upstream %.40q, fork %.40q", step, up, o1, o2)
			}
		case op == 8: // a restored or guessed rollover counter, as the relay sets them
			ssrc := ssrcs[int(s.byte())%len(ssrcs)]
			roc := uint32(s.byte() % 3)
			p.upDec.SetROC(ssrc, roc)
			p.dec.SetROC(ssrc, roc)
			r1, ok1 := p.upDec.ROC(ssrc)
			r2, ok2 := p.dec.ROC(ssrc)
			if r1 != r2 || ok1 != ok2 {
				tb.Fatalf("step %d: ROC differs: %d %v, %d %v", step, r1, ok1, r2, ok2)
			}
		default: // a packet from nowhere: random bytes
			junk := make([]byte, int(s.byte()))
			for i := range junk {
				junk[i] = s.byte()
			}
			if len(junk) > 0 {
				junk[0] = 0x80 | junk[0]&0x3f
			}
			s.unprotectRTP(tb, p, step, junk, &hUp, &hFork)
		}
	}
	for _, ssrc := range ssrcs {
		r1, ok1 := p.upDec.ROC(ssrc)
		r2, ok2 := p.dec.ROC(ssrc)
		i1, iok1 := p.upEnc.Index(ssrc)
		i2, iok2 := p.enc.Index(ssrc)
		if r1 != r2 || ok1 != ok2 || i1 != i2 || iok1 != iok2 {
			tb.Fatalf("state of SSRC %d differs: ROC %d %v / %d %v, SRTCP index %d %v / %d %v", ssrc, r1, ok1, r2, ok2, i1, iok1, i2, iok2)
		}
	}
}

func (s *script) unprotectRTP(tb testing.TB, p *diffPair, step int, pkt []byte, hUp, hFork *rtp.Header) {
	tb.Helper()
	o1 := outcome(p.upDec.DecryptRTP(nil, pkt, hUp))
	in := bytes.Clone(pkt)
	o2 := outcome(p.dec.DecryptRTP(in, in, hFork))
	if o1 != o2 {
		tb.Fatalf("step %d: DecryptRTP of %x: upstream %.60q, fork %.60q", step, pkt, o1, o2)
	}
}

// TestMatchesUpstream runs random scripts on every profile.
func TestMatchesUpstream(t *testing.T) {
	for _, profile := range diffProfiles {
		t.Run(profile.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(profile), 1))
			for range 40 {
				b := make([]byte, 3000)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				(&script{b: b}).run(t, profile, r)
			}
		})
	}
}

// FuzzMatchesUpstream lets the fuzzer write the scripts.
func FuzzMatchesUpstream(f *testing.F) {
	f.Add(byte(0), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add(byte(4), bytes.Repeat([]byte{0xff, 0, 0x5a, 3}, 64))
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		profile := diffProfiles[int(which)%len(diffProfiles)]
		(&script{b: b}).run(t, profile, rand.New(rand.NewPCG(uint64(which), uint64(len(b)))))
	})
}

// TestXorBytesCTRMatchesStdlib: the fork's counter mode is crypto/cipher's
// CTR, counters that carry across 64 bits and lengths that end mid-block
// or span several keystream buffers included.
func TestXorBytesCTRMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	ivs := [][]byte{
		make([]byte, 16),
		bytes.Repeat([]byte{0xff}, 16),
		{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe},
	}
	for range 20 {
		iv := make([]byte, 16)
		for i := range iv {
			iv[i] = byte(r.Uint32())
		}
		ivs = append(ivs, iv)
	}
	for _, iv := range ivs {
		for _, n := range []int{0, 1, 15, 16, 17, 160, 255, 256, 257, 1200, 1500} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			want := make([]byte, n)
			cipher.NewCTR(block, iv).XORKeyStream(want, src)
			for _, ksLen := range []int{16, 64, 256} {
				got := bytes.Clone(src)
				if err := xorBytesCTR(block, iv, got, got, make([]byte, ksLen)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("iv %x, %d bytes, keystream buffer %d: differs from crypto/cipher's CTR", iv, n, ksLen)
				}
			}
		}
	}
}

// TestPacketPathAllocs: protecting and unprotecting in place, a forged
// SSRC, a replay and a failed authentication allocate nothing (upstream
// allocates for the last three).
func TestPacketPathAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	for _, profile := range []ProtectionProfile{ProtectionProfileAes128CmHmacSha1_80, ProtectionProfileAeadAes128Gcm} {
		t.Run(profile.String(), func(t *testing.T) {
			p := newDiffPair(t, profile, rand.New(rand.NewPCG(1, 2)))
			pkt := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5, SequenceNumber: 1}, Payload: make([]byte, 160)}).Marshal
			plain, _ := pkt()
			buf := make([]byte, 0, 256)
			var h rtp.Header
			seq := uint16(1)
			var forged, replayed, damaged []byte
			allocs := testing.AllocsPerRun(200, func() {
				seq++
				binary.BigEndian.PutUint16(plain[2:], seq)
				buf = append(buf[:0], plain...)
				out, err := p.enc.EncryptRTP(buf[:0], buf, &h)
				if err != nil {
					t.Fatal(err)
				}
				replayed = append(replayed[:0], out...)
				forged = append(forged[:0], out...)
				binary.BigEndian.PutUint32(forged[8:], uint32(seq)*7919)
				damaged = append(damaged[:0], out...)
				damaged[len(damaged)-1] ^= 1
				if _, err := p.dec.DecryptRTP(out, out, &h); err != nil {
					t.Fatal(err)
				}
				if _, err := p.dec.DecryptRTP(replayed, replayed, &h); outcome(nil, err) != "replay" {
					t.Fatalf("replay: %v", err)
				}
				if _, err := p.dec.DecryptRTP(forged, forged, &h); outcome(nil, err) != "auth" {
					t.Fatalf("forged SSRC: %v", err)
				}
				if _, err := p.dec.DecryptRTP(damaged, damaged, &h); outcome(nil, err) == "ok" {
					t.Fatal("damaged packet accepted")
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per round, want 0", allocs)
			}
		})
	}
}

// BenchmarkRelayHop is what the relay does per SRTP packet: decrypt in
// place (replay window on), then encrypt for the other side, with
// upstream's contexts and the fork's (G.711: 160-byte payloads).
func BenchmarkRelayHop(b *testing.B) {
	for _, profile := range []ProtectionProfile{ProtectionProfileAes128CmHmacSha1_80, ProtectionProfileAeadAes128Gcm} {
		p := newDiffPair(b, profile, rand.New(rand.NewPCG(3, 4)))
		plain, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5}, Payload: make([]byte, 160)}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(profile.String()+"/upstream", func(b *testing.B) {
			buf := make([]byte, 0, 256)
			var h rtp.Header
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint16(plain[2:], uint16(i))
				buf = append(buf[:0], plain...)
				out, _ := p.upEnc.EncryptRTP(buf[:0], buf, &h)
				out, _ = p.upDec.DecryptRTP(out, out, &h)
				_, _ = p.upEnc.EncryptRTP(out[:0], out, &h)
			}
		})
		b.Run(profile.String()+"/fork", func(b *testing.B) {
			buf := make([]byte, 0, 256)
			var h rtp.Header
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint16(plain[2:], uint16(i))
				buf = append(buf[:0], plain...)
				out, _ := p.enc.EncryptRTP(buf[:0], buf, &h)
				out, _ = p.dec.DecryptRTP(out, out, &h)
				_, _ = p.enc.EncryptRTP(out[:0], out, &h)
			}
		})
	}
}

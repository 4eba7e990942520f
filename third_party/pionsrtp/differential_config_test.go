package srtp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	upstream "github.com/pion/srtp/v3"
)

// These tests widen differential_test.go's comparison with upstream to
// what it leaves out: every profile (the _32 ones too), MKIs (RFC 3711
// section 3.1: a receiver that holds two master keys and a sender that
// switches between them), SRTP without encryption and SRTCP sent with the
// E bit clear (RFC 3711 section 3.4: the receiver decides per packet),
// SRTCP replays and damaged SRTCP, RTCP from nowhere, SRTCP indices set
// near 2^31 (RFC 3711 section 9.2) and ROCs near 2^32. Each step must give
// the same bytes and the same outcome (accepted with the same plaintext,
// refused as forged, refused as a replay, refused as malformed) in both.

// configProfiles are all the profiles both implementations support.
var configProfiles = []ProtectionProfile{
	ProtectionProfileAes128CmHmacSha1_80,
	ProtectionProfileAes128CmHmacSha1_32,
	ProtectionProfileAes256CmHmacSha1_80,
	ProtectionProfileAes256CmHmacSha1_32,
	ProtectionProfileNullHmacSha1_80,
	ProtectionProfileNullHmacSha1_32,
	ProtectionProfileAeadAes128Gcm,
	ProtectionProfileAeadAes256Gcm,
}

// diffConfig is one way of configuring a session, decoded from a byte.
type diffConfig struct {
	profile       ProtectionProfile
	mki           bool // the receiver holds two master keys, by MKI
	noSRTPEncrypt bool // SRTP authenticated only (both sides know)
	noSRTCPE      bool // the sender clears SRTCP's E bit
}

func decodeConfig(c uint16) diffConfig {
	return diffConfig{
		profile:       configProfiles[int(c)%len(configProfiles)],
		mki:           c&0x100 != 0,
		noSRTPEncrypt: c&0x200 != 0,
		noSRTCPE:      c&0x400 != 0,
	}
}

// configPair is a session in both implementations: two senders (one per
// master key; without MKIs only the first is used) and one receiver.
type configPair struct {
	upEnc [2]*upstream.Context
	enc   [2]*Context
	upDec *upstream.Context
	dec   *Context
	// seen tallies the outcomes, by "rtp "/"rtcp " and outcome kind.
	seen map[string]int
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newConfigPair(tb testing.TB, cfg diffConfig, r *rand.Rand) *configPair {
	tb.Helper()
	kl, err := cfg.profile.KeyLen()
	if err != nil {
		tb.Fatal(err)
	}
	sl, err := cfg.profile.SaltLen()
	if err != nil {
		tb.Fatal(err)
	}
	keys := [2][]byte{randomBytes(r, kl), randomBytes(r, kl)}
	salts := [2][]byte{randomBytes(r, sl), randomBytes(r, sl)}
	mkis := [2][]byte{{0, 0, 0, 1}, {0xff, 0, 0x5a, 2}}

	var upOpts []upstream.ContextOption
	var opts []ContextOption
	var upSend []upstream.ContextOption
	if cfg.noSRTPEncrypt {
		upOpts = append(upOpts, upstream.SRTPNoEncryption())
		opts = append(opts, SRTPNoEncryption())
	}
	if cfg.noSRTCPE {
		upSend = append(upSend, upstream.SRTCPNoEncryption())
	}
	p := &configPair{seen: map[string]int{}}
	for i := range 2 {
		uo := append(append([]upstream.ContextOption(nil), upOpts...), upSend...)
		fo := append([]ContextOption(nil), opts...)
		if cfg.noSRTCPE {
			fo = append(fo, SRTCPNoEncryption())
		}
		if cfg.mki {
			uo = append(uo, upstream.MasterKeyIndicator(mkis[i]))
			fo = append(fo, MasterKeyIndicator(mkis[i]))
		}
		if p.upEnc[i], err = upstream.CreateContext(keys[i], salts[i], cfg.profile, uo...); err != nil {
			tb.Fatal(err)
		}
		if p.enc[i], err = CreateContext(keys[i], salts[i], cfg.profile, fo...); err != nil {
			tb.Fatal(err)
		}
	}
	uo := append(upOpts, upstream.SRTPReplayProtection(64), upstream.SRTCPReplayProtection(64))
	fo := append(opts, SRTPReplayProtection(64), SRTCPReplayProtection(64))
	if cfg.mki {
		uo = append(uo, upstream.MasterKeyIndicator(mkis[0]))
		fo = append(fo, MasterKeyIndicator(mkis[0]))
	}
	if p.upDec, err = upstream.CreateContext(keys[0], salts[0], cfg.profile, uo...); err != nil {
		tb.Fatal(err)
	}
	if p.dec, err = CreateContext(keys[0], salts[0], cfg.profile, fo...); err != nil {
		tb.Fatal(err)
	}
	if cfg.mki {
		if err := p.upDec.AddCipherForMKI(mkis[1], keys[1], salts[1]); err != nil {
			tb.Fatal(err)
		}
		if err := p.dec.AddCipherForMKI(mkis[1], keys[1], salts[1]); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// runConfig compares the two implementations over the script with cfg.
func (s *script) runConfig(tb testing.TB, cfg diffConfig, r *rand.Rand) map[string]int {
	tb.Helper()
	p := newConfigPair(tb, cfg, r)
	ssrcs := []uint32{uint32(s.u16())<<16 | uint32(s.u16()), 0x1234, uint32(s.u16())}
	seq := s.u16()
	if seq&1 == 0 {
		seq = 65535 - seq%300
	}
	var sentRTP, sentRTCP [][]byte
	var hUp, hFork rtp.Header
	var cUp, cFork rtcp.Header
	sender := 0
	for step := 0; len(s.b) > 0 && step < 400; step++ {
		switch op := s.byte() % 12; {
		case op < 4: // protect RTP with the current sender, unprotect in place
			seq += uint16(s.byte()%4) - 1
			pkt := s.rtpPacket(ssrcs, seq)
			up, err1 := p.upEnc[sender].EncryptRTP(nil, pkt, &hUp)
			buf := make([]byte, len(pkt), len(pkt)+64)
			copy(buf, pkt)
			fork, err2 := p.enc[sender].EncryptRTP(buf[:0], buf, &hFork)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
				tb.Fatalf("step %d: EncryptRTP differs: upstream %x (%v), fork %x (%v)", step, up, err1, fork, err2)
			}
			if err1 == nil {
				sentRTP = append(sentRTP, up)
				if s.byte()%4 == 0 { // damaged before the real one arrives
					compareRTP(tb, p, step, s.mutate(up), &hUp, &hFork)
				}
				compareRTP(tb, p, step, up, &hUp, &hFork)
			}
		case op < 6 && len(sentRTP) > 0: // replay or damage an earlier RTP packet
			old := sentRTP[int(s.byte())%len(sentRTP)]
			if op == 5 {
				old = s.mutate(old)
			}
			compareRTP(tb, p, step, old, &hUp, &hFork)
		case op == 6: // protect RTCP (a compound half the time), unprotect in place
			pkt := s.rtcpPacket(ssrcs)
			if s.byte()%2 == 0 {
				pkt = append(pkt, s.rtcpPacket(ssrcs)...)
			}
			up, err1 := p.upEnc[sender].EncryptRTCP(nil, pkt, &cUp)
			buf := make([]byte, len(pkt), len(pkt)+64)
			copy(buf, pkt)
			fork, err2 := p.enc[sender].EncryptRTCP(buf[:0], buf, &cFork)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
				tb.Fatalf("step %d: EncryptRTCP differs: upstream %x (%v), fork %x (%v)", step, up, err1, fork, err2)
			}
			if err1 == nil {
				sentRTCP = append(sentRTCP, up)
				if s.byte()%3 == 0 { // damaged before the real one arrives
					compareRTCP(tb, p, step, s.mutate(up), &cUp, &cFork)
				}
				compareRTCP(tb, p, step, up, &cUp, &cFork)
			}
		case op == 7 && len(sentRTCP) > 0: // replay or damage an earlier SRTCP packet
			old := sentRTCP[int(s.byte())%len(sentRTCP)]
			if b := s.byte(); b%2 == 0 {
				old = s.mutate(old)
				if t := p.rtcpTrailer(cfg); b%4 == 0 && len(old) >= t+8 { // flip the E bit
					old[len(old)-t] ^= 0x80
				}
			}
			compareRTCP(tb, p, step, old, &cUp, &cFork)
		case op == 8 && cfg.mki: // the sender switches master key
			sender ^= 1
		case op == 9: // counters as a restore or a long call leaves them
			ssrc := ssrcs[int(s.byte())%len(ssrcs)]
			switch b := s.byte(); b % 3 {
			case 0:
				roc := uint32(s.byte() % 3)
				if b&0x80 != 0 {
					roc = ^roc // near 2^32: the last ROCs
				}
				for i := range 2 {
					p.upEnc[i].SetROC(ssrc, roc)
					p.enc[i].SetROC(ssrc, roc)
				}
				p.upDec.SetROC(ssrc, roc)
				p.dec.SetROC(ssrc, roc)
			case 1:
				idx := uint32(s.u16())
				if b&0x80 != 0 {
					idx = maxSRTCPIndex - idx%4 // the last SRTCP indices
				}
				for i := range 2 {
					p.upEnc[i].SetIndex(ssrc, idx)
					p.enc[i].SetIndex(ssrc, idx)
				}
			default:
				r1, ok1 := p.upDec.ROC(ssrc)
				r2, ok2 := p.dec.ROC(ssrc)
				if r1 != r2 || ok1 != ok2 {
					tb.Fatalf("step %d: ROC differs: %d %v, %d %v", step, r1, ok1, r2, ok2)
				}
			}
		case op == 10: // RTCP from nowhere
			junk := make([]byte, int(s.byte()))
			for i := range junk {
				junk[i] = s.byte()
			}
			if len(junk) > 1 {
				junk[0] = 0x80 | junk[0]&0x1f
				junk[1] = 200 + junk[1]%8
			}
			compareRTCP(tb, p, step, junk, &cUp, &cFork)
		default: // RTP from nowhere
			junk := make([]byte, int(s.byte()))
			for i := range junk {
				junk[i] = s.byte()
			}
			if len(junk) > 0 {
				junk[0] = 0x80 | junk[0]&0x3f
			}
			compareRTP(tb, p, step, junk, &hUp, &hFork)
		}
	}
	for _, ssrc := range ssrcs {
		r1, ok1 := p.upDec.ROC(ssrc)
		r2, ok2 := p.dec.ROC(ssrc)
		if r1 != r2 || ok1 != ok2 {
			tb.Fatalf("ROC of SSRC %d differs: %d %v / %d %v", ssrc, r1, ok1, r2, ok2)
		}
		for i := range 2 {
			i1, iok1 := p.upEnc[i].Index(ssrc)
			i2, iok2 := p.enc[i].Index(ssrc)
			if i1 != i2 || iok1 != iok2 {
				tb.Fatalf("SRTCP index of SSRC %d differs: %d %v / %d %v", ssrc, i1, iok1, i2, iok2)
			}
		}
	}
	return p.seen
}

// rtcpTrailer is how far from an SRTCP packet's end its E bit is.
func (p *configPair) rtcpTrailer(cfg diffConfig) int {
	n := srtcpIndexSize
	if cfg.mki {
		n += 4
	}
	tag, _ := cfg.profile.AuthTagRTCPLen()
	return n + tag
}

func compareRTP(tb testing.TB, p *configPair, step int, pkt []byte, hUp, hFork *rtp.Header) {
	tb.Helper()
	o1 := outcome(p.upDec.DecryptRTP(nil, pkt, hUp))
	in := bytes.Clone(pkt)
	o2 := outcome(p.dec.DecryptRTP(in, in, hFork))
	if o1 != o2 {
		tb.Fatalf("step %d: DecryptRTP of %x: upstream %.60q, fork %.60q", step, pkt, o1, o2)
	}
	p.seen["rtp "+kind(o1)]++
}

// kind is an outcome without the plaintext.
func kind(o string) string {
	if len(o) > 2 && o[:3] == "ok:" {
		return "ok"
	}
	return o
}

func compareRTCP(tb testing.TB, p *configPair, step int, pkt []byte, hUp, hFork *rtcp.Header) {
	tb.Helper()
	o1 := outcome(p.upDec.DecryptRTCP(nil, pkt, hUp))
	in := bytes.Clone(pkt)
	o2 := outcome(p.dec.DecryptRTCP(in, in, hFork))
	if o1 != o2 {
		tb.Fatalf("step %d: DecryptRTCP of %x: upstream %.60q, fork %.60q", step, pkt, o1, o2)
	}
	p.seen["rtcp "+kind(o1)]++
}

// TestMatchesUpstreamConfigs runs random scripts on every configuration.
func TestMatchesUpstreamConfigs(t *testing.T) {
	for c := range uint16(8 * len(configProfiles)) {
		cfg := uint16(c%8)<<8 | c/8
		t.Run(decodeConfig(cfg).String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(cfg), 2))
			seen := map[string]int{}
			for range 6 {
				for k, n := range (&script{b: randomBytes(r, 3000)}).runConfig(t, decodeConfig(cfg), r) {
					seen[k] += n
				}
			}
			// The scripts must reach every outcome, or they compare little.
			for _, k := range []string{"rtp ok", "rtp auth", "rtp replay", "rtp error", "rtcp ok", "rtcp auth", "rtcp replay", "rtcp error"} {
				if seen[k] == 0 {
					t.Errorf("no %q outcome in %v", k, seen)
				}
			}
		})
	}
}

func (c diffConfig) String() string {
	s := c.profile.String()
	if c.mki {
		s += "/mki"
	}
	if c.noSRTPEncrypt {
		s += "/srtp-auth-only"
	}
	if c.noSRTCPE {
		s += "/srtcp-e0"
	}
	return s
}

// FuzzMatchesUpstreamConfigs lets the fuzzer choose the configuration and
// write the script.
func FuzzMatchesUpstreamConfigs(f *testing.F) {
	f.Add(uint16(0x700), bytes.Repeat([]byte{0, 6, 7, 8, 1, 9, 0x81, 10, 11, 4, 5}, 20))
	f.Add(uint16(0x106), bytes.Repeat([]byte{6, 0, 7, 2, 8, 6, 1, 7, 0}, 30))
	f.Add(uint16(0x501), bytes.Repeat([]byte{9, 0x81, 0x81, 0xff, 0xff, 6, 6, 6, 7, 1}, 20))
	seed := binary.BigEndian.AppendUint64(nil, 0x0123456789abcdef)
	f.Add(uint16(0x307), bytes.Repeat(seed, 40))
	f.Fuzz(func(t *testing.T, cfg uint16, b []byte) {
		(&script{b: b}).runConfig(t, decodeConfig(cfg), rand.New(rand.NewPCG(uint64(cfg), uint64(len(b)))))
	})
}

// FuzzProtectArbitrary: the relay protects what a plain RTP peer sent
// (unauthenticated bytes, after its own checks), so the fork must take any
// bytes as upstream does: the same packet out or an error in both, never a
// panic, and what it protected unprotects alike in both.
func FuzzProtectArbitrary(f *testing.F) {
	f.Add(uint16(0), []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3})
	f.Add(uint16(6), []byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xbe, 0xde, 0, 9, 1})
	f.Add(uint16(1), []byte{0xa3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 0xff})
	f.Add(uint16(7), []byte{0x81, 0xc9, 0, 7, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, cfg uint16, pkt []byte) {
		p := newConfigPair(t, decodeConfig(cfg), rand.New(rand.NewPCG(uint64(cfg), 1)))
		var hUp, hFork rtp.Header
		var cUp, cFork rtcp.Header
		buf := make([]byte, len(pkt), len(pkt)+64)
		copy(buf, pkt)
		up, err1 := p.upEnc[0].EncryptRTP(nil, pkt, &hUp)
		fork, err2 := p.enc[0].EncryptRTP(buf[:0], buf, &hFork)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
			t.Fatalf("EncryptRTP differs: upstream %x (%v), fork %x (%v)", up, err1, fork, err2)
		}
		if err1 == nil {
			compareRTP(t, p, 0, up, &hUp, &hFork)
		}
		copy(buf[:len(pkt)], pkt)
		up, err1 = p.upEnc[0].EncryptRTCP(nil, pkt, &cUp)
		fork, err2 = p.enc[0].EncryptRTCP(buf[:0], buf[:len(pkt)], &cFork)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
			t.Fatalf("EncryptRTCP differs: upstream %x (%v), fork %x (%v)", up, err1, fork, err2)
		}
		if err1 == nil {
			compareRTCP(t, p, 0, up, &cUp, &cFork)
		}
	})
}

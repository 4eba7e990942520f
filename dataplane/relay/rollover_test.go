package relay

import (
	"fmt"
	"testing"

	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/internal/racecheck"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestWrapLostBeforeKeys: a browser whose first packets (sequence numbers
// 65534 and 65535) met no keys yet (drop_not_ready) and whose sequence
// then wrapped is at rollover counter 1; the node's fresh context starts
// at 0 (RFC 3711 section 3.3.1). Its media must flow anyway: the first
// packet that authenticates with ROC 1 settles it. Before the guess, every
// later packet failed as drop_srtp_auth and the direction never flowed
// (one session in 1 000 of a bench run).
func TestWrapLostBeforeKeys(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(profileName(profile), func(t *testing.T) {
			h := newHotPath(t, profile)
			h.srtpPackets(65534, 2) // sent before the node had keys: never delivered
			for _, p := range h.srtpPackets(0, 10) {
				h.deliver(h.webSlot, p, h.browser)
			}
			h.flush()
			c := h.web.ctr.proto()
			if c.PacketsIn != 10 || c.DropSrtpAuth != 0 || h.plain.ctr.packetsOut.Load() != 10 {
				t.Fatalf("after a wrap lost before the keys: in %d, drop_srtp_auth %d, relayed %d", c.PacketsIn, c.DropSrtpAuth, h.plain.ctr.packetsOut.Load())
			}
			if roc, ok := h.web.dec.ROC(0xb0b); !ok || roc != 1 {
				t.Fatalf("context's ROC for the browser's SSRC: %d, %v", roc, ok)
			}
		})
	}
}

// TestROCGuessesAreBounded: forged packets before a leg's first real one
// are counted as drop_srtp_auth, leave no per-SSRC state behind past
// maxROCGuesses, and do not stop the real stream (which starts at ROC 0)
// from flowing; once it did, nothing more is guessed.
func TestROCGuessesAreBounded(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(profileName(profile), func(t *testing.T) {
			h := newHotPath(t, profile)
			const forged = 3 * maxROCGuesses
			for i := range forged {
				p := rtpPacket(uint16(i), 0, 0xf000+uint32(i))
				p = append(p, make([]byte, 16)...) // a tag that cannot verify
				h.deliver(h.webSlot, p, h.browser)
			}
			if got := h.web.ctr.drop[pb.DropSrtpAuth].Load(); got != forged {
				t.Fatalf("drop_srtp_auth %d after %d forged packets", got, forged)
			}
			if h.web.rocGuesses.n != maxROCGuesses {
				t.Fatalf("guessed on %d SSRCs", h.web.rocGuesses.n)
			}
			states := 0
			for i := range forged {
				if roc, ok := h.web.dec.ROC(0xf000 + uint32(i)); ok {
					states++
					if roc != 0 {
						t.Fatalf("forged SSRC %d left at ROC %d", i, roc)
					}
				}
			}
			if states > maxROCGuesses {
				t.Fatalf("%d forged SSRCs hold state in the context", states)
			}
			for _, p := range h.srtpPackets(100, 5) {
				h.deliver(h.webSlot, p, h.browser)
			}
			if c := h.web.ctr.proto(); c.PacketsIn != 5 || !h.web.decProven {
				t.Fatalf("real stream after forged packets: in %d, proven %v", c.PacketsIn, h.web.decProven)
			}
		})
	}
}

// TestForgedPacketDoesNotSpendTheGuess: a forged packet with the browser's
// own SSRC, before its first real one, fails (and its failed guess leaves
// the SSRC's state as new); the real stream, past a wrap lost before the
// keys, still gets its guess and flows.
func TestForgedPacketDoesNotSpendTheGuess(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAes128CmHmacSha1_80)
	forged := append(rtpPacket(3, 0, 0xb0b), make([]byte, 10)...)
	h.deliver(h.webSlot, forged, h.browser)
	h.srtpPackets(65535, 1) // lost before the keys
	for _, p := range h.srtpPackets(0, 5) {
		h.deliver(h.webSlot, p, h.browser)
	}
	if c := h.web.ctr.proto(); c.PacketsIn != 5 || c.DropSrtpAuth != 1 {
		t.Fatalf("in %d, drop_srtp_auth %d", c.PacketsIn, c.DropSrtpAuth)
	}
}

// TestRestoredROCIsNotGuessedOn: a session restored with its rollover
// counters (applySSRCs) keeps them when a packet that does not
// authenticate comes first.
func TestRestoredROCIsNotGuessedOn(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	h.web.dec.SetROC(0xb0b, 5)
	h.deliver(h.webSlot, append(rtpPacket(3, 0, 0xb0b), make([]byte, 16)...), h.browser)
	if roc, ok := h.web.dec.ROC(0xb0b); !ok || roc != 5 {
		t.Fatalf("restored ROC 5 is now %d (%v)", roc, ok)
	}
}

// forgedRTP is a packet with the browser's SSRC (or another) and a tag
// that cannot verify with any rollover counter.
func forgedRTP(seq uint16, ssrc uint32) []byte {
	return append(rtpPacket(seq, 0, ssrc), make([]byte, 16)...)
}

// TestForgedFloodBeforeFirstPacket: a flood of forged packets before a
// leg's first real one, with the browser's own SSRC at every sequence
// number that may be guessed on and with fresh SSRCs, is counted packet
// for packet as drop_srtp_auth, grows no state past maxROCGuesses SSRCs,
// is never accepted, and does not stop the real stream from flowing
// afterwards at the rollover counter its sender really used (RFC 3711
// section 3.3.1): 0, or 1 past a wrap lost before the keys.
func TestForgedFloodBeforeFirstPacket(t *testing.T) {
	for _, tc := range []struct {
		profile srtp.ProtectionProfile
		wrapped bool // the real stream lost a wrap before the keys
	}{
		{srtp.ProtectionProfileAeadAes128Gcm, true}, {srtp.ProtectionProfileAes128CmHmacSha1_80, true},
		{srtp.ProtectionProfileAeadAes128Gcm, false}, {srtp.ProtectionProfileAes128CmHmacSha1_80, false},
	} {
		t.Run(fmt.Sprintf("%s/wrapped=%v", profileName(tc.profile), tc.wrapped), func(t *testing.T) {
			h := newHotPath(t, tc.profile)
			const flood = 4000
			for i := range flood {
				ssrc := uint32(0xb0b)
				if i%2 == 1 {
					ssrc = 0xf000 + uint32(i)
				}
				h.deliver(h.webSlot, forgedRTP(uint16(i*17), ssrc), h.browser)
			}
			c := h.web.ctr.proto()
			if c.PacketsIn != 0 || h.web.decProven || c.DropSrtpAuth < flood {
				t.Fatalf("after the flood: in %d, proven %v, drop_srtp_auth %d", c.PacketsIn, h.web.decProven, c.DropSrtpAuth)
			}
			if n := h.web.rocGuesses.n; n > maxROCGuesses {
				t.Fatalf("guessed on %d SSRCs", n)
			}
			if roc, ok := h.web.dec.ROC(0xb0b); ok && roc != 0 {
				t.Fatalf("the flood left the browser's SSRC at ROC %d", roc)
			}
			drops := c.DropSrtpAuth
			first, wantROC := uint16(100), uint32(0)
			if tc.wrapped {
				h.srtpPackets(65530, 6) // lost before the keys
				first, wantROC = 0, 1
			}
			for _, p := range h.srtpPackets(first, 10) {
				h.deliver(h.webSlot, p, h.browser)
			}
			h.flush()
			if c := h.web.ctr.proto(); c.PacketsIn != 10 || c.DropSrtpAuth != drops || h.plain.ctr.packetsOut.Load() != 10 {
				t.Fatalf("real stream after the flood: in %d, drop_srtp_auth %d (was %d), relayed %d", c.PacketsIn, c.DropSrtpAuth, drops, h.plain.ctr.packetsOut.Load())
			}
			if roc, _ := h.web.dec.ROC(0xb0b); roc != wantROC {
				t.Fatalf("browser's SSRC at ROC %d", roc)
			}
		})
	}
}

// TestProvenStreamIsNotGuessedOn: once a packet authenticated (here with
// the guessed ROC 1), forged packets with the stream's SSRC at any
// sequence number get no guess and leave its rollover counter and replay
// window alone; a replay of the packet that settled the guess is refused
// (RFC 3711 section 3.3.2: accepted once), and the stream goes on.
func TestProvenStreamIsNotGuessedOn(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAes128CmHmacSha1_80)
	h.srtpPackets(65535, 1) // lost before the keys
	pkts := h.srtpPackets(0, 20)
	first := append([]byte(nil), pkts[0]...)
	h.deliver(h.webSlot, pkts[0], h.browser)
	if !h.web.decProven {
		t.Fatal("first packet after the lost wrap not accepted")
	}
	for i := range 300 {
		h.deliver(h.webSlot, forgedRTP(uint16(1+i), 0xb0b), h.browser) // ahead: authenticated, never accepted
	}
	if roc, _ := h.web.dec.ROC(0xb0b); roc != 1 {
		t.Fatalf("forged packets moved the stream to ROC %d", roc)
	}
	if n := h.web.rocGuesses.n; n != 1 {
		t.Fatalf("%d SSRCs guessed on", n)
	}
	h.deliver(h.webSlot, first, h.browser) // a replay
	for _, p := range pkts[1:] {
		h.deliver(h.webSlot, p, h.browser)
	}
	h.flush()
	c := h.web.ctr.proto()
	if c.PacketsIn != 20 || c.DropSrtpAuth != 300 || c.DropReplay != 1 {
		t.Fatalf("in %d, drop_srtp_auth %d, drop_replay %d", c.PacketsIn, c.DropSrtpAuth, c.DropReplay)
	}
}

// forgedLeg is a hot path whose leg has (proven) or has not yet
// authenticated a packet, and forged packets with its SSRC, ahead of it.
func forgedLeg(tb testing.TB, profile srtp.ProtectionProfile, proven bool) (*hotPath, [][]byte) {
	h := newHotPath(tb, profile)
	if proven {
		for _, p := range h.srtpPackets(0, 2) {
			h.deliver(h.webSlot, p, h.browser)
		}
	}
	pkts := make([][]byte, 1024)
	for i := range pkts {
		pkts[i] = forgedRTP(uint16(10+i), 0xb0b)
	}
	return h, pkts
}

// TestForgedPacketCostBeforeFirstPacket: before a leg's first real packet
// a forged one costs at most one more authentication than after it, and
// so at most twice its allocations (none with AES-CM/HMAC; pion/srtp's
// AES-GCM failure wraps its error, 4 allocations per failed attempt, with
// or without the guess). BenchmarkForgedPacket measures the CPU.
func TestForgedPacketCostBeforeFirstPacket(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("allocation counts are pinned without -race")
	}
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		var allocs [2]float64
		for j, proven := range []bool{true, false} {
			h, pkts := forgedLeg(t, profile, proven)
			i := 0
			allocs[j] = testing.AllocsPerRun(500, func() { h.deliver(h.webSlot, pkts[i%len(pkts)], h.browser); i++ })
			if c := h.web.ctr.proto(); c.PacketsIn != 2*btoi(proven) || c.DropSrtpAuth != uint64(i) {
				t.Fatalf("%s proven %v: in %d, drop_srtp_auth %d after %d forged packets", profileName(profile), proven, c.PacketsIn, c.DropSrtpAuth, i)
			}
		}
		if allocs[1] > 2*allocs[0] || (profile == srtp.ProtectionProfileAes128CmHmacSha1_80 && allocs[1] != 0) {
			t.Errorf("%s: %v allocs per forged packet before the first real one, %v after", profileName(profile), allocs[1], allocs[0])
		}
		t.Logf("%s: %v allocs per forged packet before the first real one, %v after", profileName(profile), allocs[1], allocs[0])
	}
}

func btoi(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// BenchmarkForgedPacket: the CPU a forged packet with the leg's SSRC costs
// before the leg's first real packet (a rollover guess: a copy and a
// second authentication) and after it.
func BenchmarkForgedPacket(b *testing.B) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		for _, proven := range []bool{true, false} {
			name := profileName(profile) + "/unproven"
			if proven {
				name = profileName(profile) + "/proven"
			}
			b.Run(name, func(b *testing.B) {
				h, pkts := forgedLeg(b, profile, proven)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					h.deliver(h.webSlot, pkts[i%len(pkts)], h.browser)
					i++
				}
			})
		}
	}
}

package relay

import (
	"testing"

	"github.com/pion/srtp/v3"

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

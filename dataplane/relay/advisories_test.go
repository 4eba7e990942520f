package relay

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/srtp/v3"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Regression tests for peers' CVEs at the packet path (issue 8 item 11);
// CVE-2025-53399 is TestSDESLearnsOnlyFromAuthenticPackets, the pion
// advisories are in dtlsleg.

// TestDTLSFromUncheckedAddressesNeverReachesTheLeg is the DTLS ClientHello
// race (ES2023-03 rtpengine, CVE-2023-49786 Asterisk, ES2023-02
// FreeSWITCH: a ClientHello from an address that had passed no ICE check
// reset or hijacked the call's handshake). A worker hands DTLS to a leg's
// handshake only from an address that passed a check on that leg; a
// stranger's ClientHellos, before and after the peer's, are dropped and
// counted, and never reach the leg.
func TestDTLSFromUncheckedAddressesNeverReachesTheLeg(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	clientHello := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	stranger := netip.MustParseAddrPort("127.0.0.1:9")
	before := h.e.Totals().DropUnknownSource
	for i := 0; i < 100; i++ {
		h.deliver(h.webSlot, clientHello, stranger)
	}
	if got := h.web.ctr.dtlsIn.Load(); got != 0 {
		t.Fatalf("%d ClientHellos from an unchecked address reached the leg", got)
	}
	if got := h.e.Totals().DropUnknownSource - before; got != 100 {
		t.Fatalf("%d of 100 counted as unknown source", got)
	}
	h.deliver(h.webSlot, clientHello, h.browser) // the checked peer's does
	if got := h.web.ctr.dtlsIn.Load(); got != 1 {
		t.Fatalf("the checked peer's DTLS: dtls_in %d", got)
	}
}

// TestBadSRTPNeverEndsTheCall is CVE-2021-41105 (FreeSWITCH hung up a call
// after 100 SRTP packets that failed authentication): a thousand forged or
// corrupted packets from the leg's own peer are dropped and counted, and
// the leg keeps relaying what authenticates.
func TestBadSRTPNeverEndsTheCall(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	good := h.srtpPackets(1, 1001)
	for i, p := range good[:1000] {
		bad := bytes.Clone(p)
		bad[len(bad)-1-i%8] ^= 0x5a // a corrupted tag, or payload
		h.deliver(h.webSlot, bad, h.browser)
	}
	h.deliver(h.webSlot, good[1000], h.browser)
	h.flush()
	c := h.web.ctr.proto()
	if c.DropSrtpAuth != 1000 || c.PacketsIn != 1 || h.plain.ctr.packetsOut.Load() != 1 {
		t.Fatalf("after 1000 bad packets and a good one: %v, relayed %d", c, h.plain.ctr.packetsOut.Load())
	}
	if _, ok := h.e.Session(h.sess.ID); !ok || h.sess.closed.Load() {
		t.Fatal("the session ended")
	}
	if s := pb.LegState(h.web.state.Load()); s != pb.LegState_LEG_STATE_CONNECTED {
		t.Fatalf("leg state %v", s)
	}
}

// TestCraftedRTPPadding is GHSA-f26w-gh5m-qq77 (pion/interceptor panicked
// on RTP whose padding length is 0 or larger than the payload): the node
// does not link pion/interceptor, and its own RTP parsing refuses such
// packets and counts them, on the paths that parse (toward a WebRTC leg)
// and the one that does not (plain to plain, passed through untouched).
func TestCraftedRTPPadding(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	for _, padLen := range []byte{0, 200, 255} {
		p := rtpPacket(uint16(10+padLen), 0, 0x5eed)
		p[0] |= 0x20 // P bit
		p[len(p)-1] = padLen
		h.deliver(h.rtpSlot, p, h.pbx)   // toward the browser: parsed
		h.deliver(h.plainSlot, p, h.pbx) // plain to plain: passed through
	}
	h.flush()
	if c := h.web.ctr.proto(); c.PacketsOut != 0 || c.DropMalformed != 3 {
		t.Fatalf("toward the browser: %v", c)
	}
}

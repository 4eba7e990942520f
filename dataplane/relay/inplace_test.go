package relay

import (
	"bytes"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestProtectNeverSendsPlaintext: the relay encrypts in place, into the
// buffer's tailroom, and sends the buffer. When a buffer lacks the room
// (a tailroom smaller than a profile's tag and SRTCP trailer), pion's
// context writes the packet to a new buffer and the one the relay sends
// still holds the plaintext: that packet must be dropped and counted,
// never sent to an SRTP peer. With the room, the buffer is encrypted.
func TestProtectNeverSendsPlaintext(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(profileName(profile), func(t *testing.T) {
			h := newHotPath(t, profile)
			cfg := h.sess.cfg.Load()
			dlc := &cfg.legs[h.web.index]
			dsc := &dlc.streams[0]
			drops := func() uint64 { return h.web.ctr.drop[pb.DropMalformed].Load() }
			for i, room := range []int{0, Tailroom} {
				plain := rtpPacket(uint16(100+i), 0, 0x5eed)
				buf := make([]byte, len(plain), len(plain)+room)
				copy(buf, plain)
				before := drops()
				n, ok := h.w.protectRTP(h.web, dsc, buf, len(buf), 0)
				switch {
				case room == 0 && (ok || drops() != before+1):
					t.Fatalf("RTP without tailroom: sent %d bytes (%v), drops %d -> %d", n, ok, before, drops())
				case room > 0 && (!ok || n <= len(plain) || bytes.Equal(buf[12:len(plain)], plain[12:])):
					t.Fatalf("RTP with tailroom: %d bytes (%v), payload encrypted in place: %v", n, ok, !bytes.Equal(buf[12:len(plain)], plain[12:]))
				}

				plain, err := (&rtcp.ReceiverReport{SSRC: 0x5eed}).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				buf = make([]byte, len(plain), len(plain)+room)
				copy(buf, plain)
				before = drops()
				var received rewrite.StreamTable
				n, ok = h.w.protectRTCP(h.plain, h.web, dlc, dsc, &received, buf, len(buf))
				switch {
				case room == 0 && (ok || drops() != before+1):
					t.Fatalf("RTCP without tailroom: sent %d bytes (%v), drops %d -> %d", n, ok, before, drops())
				case room > 0 && (!ok || n <= len(plain)):
					t.Fatalf("RTCP with tailroom: %d bytes (%v)", n, ok)
				}
			}
		})
	}
}

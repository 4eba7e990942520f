package node

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestRestoreNeverReusesAnIndex: a node restarted from a saved session
// never encrypts a second packet at an SRTP index or SRTCP index it used
// before the restart, under the same keys. Under AES-CM that would reuse
// keystream (the XOR of two plaintexts leaks), under AES-GCM a nonce,
// which gives away the authentication key (RFC 3711 section 9.2, RFC 7714
// sections 8.1 and 16). The node encrypts toward an SDES PBX, whose test
// peer sees the raw packets: each SRTP packet's index is found by
// decrypting it with each plausible rollover counter (the ROC is not on
// the wire), each SRTCP packet's is in its trailer. The record restored
// is read at a moment, and the node sends on afterwards (the keeper
// writes records a moment late, in batches): across a step of the saved
// counters, across a sequence-number wrap (a new ROC), and with the
// browser's sequence numbers going back after the restart (a peer that
// restarted, or a replayed packet first: the relay's output numbering
// must not follow them back onto used indexes).
func TestRestoreNeverReusesAnIndex(t *testing.T) {
	for _, tc := range []struct {
		name  string
		suite string
		prof  srtp.ProtectionProfile
		seq0  uint16 // the browser's first sequence number
		stale int    // packets sent after the record was read
		back  bool   // after the restart the browser starts again at seq0
		late  bool   // the first RTCP report goes after the record was read
	}{
		{"CM-80/fresh record", "AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 1000, 0, false, false},
		{"CM-80/record before a step", "AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 4080, 30, false, false},
		{"CM-80/record before a wrap", "AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 65500, 40, false, false},
		{"CM-80/browser goes back", "AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 1000, 20, true, false},
		{"CM-80/record before the first report", "AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 1000, 10, false, true},
		{"GCM/record before a wrap", "AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 65500, 40, false, false},
		{"GCM/browser goes back", "AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 65500, 40, true, false},
		{"GCM/record before the first report", "AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 1000, 10, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRestoreNeverReusesAnIndex(t, tc.suite, tc.prof, tc.seq0, tc.stale, tc.back, tc.late)
		})
	}
}

func testRestoreNeverReusesAnIndex(t *testing.T, suite string, prof srtp.ProtectionProfile, seq0 uint16, stale int, back, late bool) {
	keyLen, _ := prof.KeyLen()
	saltLen, _ := prof.SaltLen()
	remoteKey := bytes.Repeat([]byte{7}, keyLen+saltLen)
	a := newTestNode(t, nil)
	c := mediatest.NewCall(t, a, mediatest.CallOptions{Plain: func(l *pb.LegSpec) {
		l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: suite, RemoteKey: remoteKey}
	}})
	local := c.Sess.Legs[1].Streams[0].SdesLocalKey
	if err := c.Plain.UseSDES(prof, remoteKey, local); err != nil {
		t.Fatal(err)
	}
	idx := newIndexProbe(t, prof, local)
	c.BSeq = seq0
	used := idx.relay(c, "before", 10, !late)
	sv := savedCopy(t, a, c.Sess.Id)
	if stale > 0 {
		used = append(used, idx.relay(c, "stale", stale, true)...)
	}
	n := restartNode(t, a, &sv)
	c.N = n
	if back {
		c.BSeq = seq0
	}
	after := idx.relay(c, "after", 10, true)
	var top uint64
	for _, i := range used {
		top = max(top, i)
	}
	for _, i := range after {
		if i <= top {
			t.Fatalf("after the restore an SRTP packet went out at index %#x, at or below %#x used before (indexes before %#x, after %#x)", i, top, used, after)
		}
	}
	if len(idx.srtcpBefore) == 0 || len(idx.srtcpAfter) == 0 {
		t.Fatalf("SRTCP seen: %d before, %d after the restore", len(idx.srtcpBefore), len(idx.srtcpAfter))
	}
	var rtcpTop uint32
	for _, i := range idx.srtcpBefore {
		rtcpTop = max(rtcpTop, i)
	}
	for _, i := range idx.srtcpAfter {
		if i <= rtcpTop {
			t.Fatalf("after the restore an SRTCP packet went out at index %d, at or below %d used before", i, rtcpTop)
		}
	}
}

// indexProbe finds the index each SRTP packet the node sent the PBX was
// encrypted at, with the node's SDES key, and collects the SRTCP indexes.
type indexProbe struct {
	t                       *testing.T
	gcm                     bool
	rocs                    []*srtp.Context // decrypting, one per ROC tried
	srtcpBefore, srtcpAfter []uint32
}

func newIndexProbe(t *testing.T, prof srtp.ProtectionProfile, key []byte) *indexProbe {
	kl, _ := prof.KeyLen()
	p := &indexProbe{t: t, gcm: prof == srtp.ProtectionProfileAeadAes128Gcm || prof == srtp.ProtectionProfileAeadAes256Gcm}
	for range 3 {
		c, err := srtp.CreateContext(key[:kl], key[kl:], prof)
		if err != nil {
			t.Fatal(err)
		}
		p.rocs = append(p.rocs, c)
	}
	return p
}

// relay sends count packets from the browser and, if report, one RTCP
// report, and returns the SRTP indexes the node sent them to the PBX at (the SRTCP
// ones go to srtcpBefore, or srtcpAfter once tag is "after").
func (p *indexProbe) relay(c *mediatest.Call, tag string, count int, report bool) []uint64 {
	t := p.t
	t.Helper()
	for i := 0; i < count; i++ {
		if err := c.Browser.Send(0, c.BSeq, uint32(160*int(c.BSeq)), false, mediatest.Payload(tag, i)); err != nil {
			t.Fatal(err)
		}
		c.BSeq++
	}
	if report {
		rr := &rtcp.ReceiverReport{SSRC: c.Browser.SSRC(), Reports: []rtcp.ReceptionReport{{SSRC: 0x5eed}}}
		if err := c.Browser.PC.WriteRTCP([]rtcp.Packet{rr}); err != nil {
			t.Fatal(err)
		}
	}
	var out []uint64
	rtcpSeen := !report
	for deadline := time.Now().Add(5 * time.Second); len(out) < count || !rtcpSeen; {
		pk, err := c.Plain.Next(time.Until(deadline), func(pk mediatest.Packet) bool {
			return pk.RTCP != nil || bytes.HasPrefix(pk.RTP.Payload, []byte(tag))
		})
		if err != nil {
			t.Fatalf("%s: %d of %d packets and rtcp %v reached the PBX: %v", tag, len(out), count, rtcpSeen, err)
		}
		if pk.RTCP != nil {
			i := p.srtcpIndex(pk.Raw)
			if tag == "after" {
				p.srtcpAfter = append(p.srtcpAfter, i)
			} else {
				p.srtcpBefore = append(p.srtcpBefore, i)
			}
			rtcpSeen = true
			continue
		}
		out = append(out, p.srtpIndex(pk.Raw))
	}
	return out
}

// srtpIndex is the index pkt was encrypted at: ROC<<16 | SEQ for the ROC
// it authenticates with.
func (p *indexProbe) srtpIndex(pkt []byte) uint64 {
	var h rtp.Header
	if _, err := h.Unmarshal(pkt); err != nil {
		p.t.Fatal(err)
	}
	for roc, c := range p.rocs {
		c.SetROC(h.SSRC, uint32(roc))
		if _, err := c.DecryptRTP(nil, pkt, nil); err == nil {
			return uint64(roc)<<16 | uint64(h.SequenceNumber)
		}
	}
	p.t.Fatalf("SRTP packet seq %d authenticates with no ROC below %d", h.SequenceNumber, len(p.rocs))
	return 0
}

// srtcpIndex reads an SRTCP packet's index from its trailer: E bit and
// index, then the tag (CM-80: 10 bytes; AES-GCM's tag is inside the
// encrypted part, RFC 7714 section 9.1).
func (p *indexProbe) srtcpIndex(pkt []byte) uint32 {
	end := len(pkt) - 10
	if p.gcm {
		end = len(pkt)
	}
	if end < 12 {
		p.t.Fatalf("SRTCP packet of %d bytes", len(pkt))
	}
	return binary.BigEndian.Uint32(pkt[end-4:end]) &^ (1 << 31)
}

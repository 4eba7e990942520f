package relay

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pion/rtcp"

	"github.com/strait-sbc/strait/dataplane/rewrite"
	forksrtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// TestRestoredContextsUseNoIndexTwice: the rollover state a leg saves,
// read some packets before the restart (a record lags: the keeper writes
// it a moment late), restored on fresh contexts under the same keys,
// never lets an SRTP index or SRTCP index the leg already encrypted at be
// used again (RFC 3711 section 9.2; under AES-GCM a repeated index is a
// repeated nonce, RFC 7714 sections 8.1 and 16): the encrypting context
// refuses an index below the saved floor, the outbound stream resumes at
// or above it, SRTCP numbers on above the indexes used; and a stream
// resumed there goes out at an index above all used, across a wrap too.
func TestRestoredContextsUseNoIndexTwice(t *testing.T) {
	for _, tc := range []struct {
		seq0        uint16 // the first outbound sequence number
		before, lag int    // packets before the record is read, and after
		rtcpBefore  int    // SRTCP packets before the record is read
		rtcpLag     int    // and after
	}{
		{1000, 100, 0, 3, 0},
		{4000, 100, 3000, 1500, 1000}, // the record lags a step of each counter
		{65000, 100, 1000, 10, 20},    // the outbound numbers wrapped after the record
		{61000, 100, 4000, 10, 20},    // the record's ceiling wraps
	} {
		for _, profile := range []forksrtp.ProtectionProfile{forksrtp.ProtectionProfileAes128CmHmacSha1_80, forksrtp.ProtectionProfileAeadAes128Gcm} {
			t.Run(fmt.Sprintf("%s/seq0=%d/lag=%d", profileName(profile), tc.seq0, tc.lag), func(t *testing.T) {
				h := newHotPath(t, profile)
				l := h.web
				kl, _ := profile.KeyLen()
				sl, _ := profile.SaltLen()
				key, salt := make([]byte, kl), make([]byte, sl)
				for i := range key {
					key[i] = byte(7 * i)
				}
				fresh := func() *forksrtp.Context {
					c, err := forksrtp.CreateContext(key, salt, profile)
					if err != nil {
						t.Fatal(err)
					}
					return c
				}
				l.enc = fresh()
				ssrc := l.streams[0].localSSRC
				seq := tc.seq0
				var used []uint64 // SRTP indexes encrypted at (in order: the highest)
				var rtcpUsed []uint32
				sendRTP := func(n int) {
					for range n {
						if _, err := l.enc.EncryptRTP(nil, rtpPacket(seq, 0, ssrc), nil); err != nil {
							t.Fatal(err)
						}
						idx, _ := l.enc.SRTPIndex(ssrc)
						used = append(used, idx)
						seq++
					}
				}
				sendRTCP := func(n int) {
					for range n {
						if _, err := l.enc.EncryptRTCP(nil, rtcpReport(ssrc), nil); err != nil {
							t.Fatal(err)
						}
						idx, _ := l.enc.Index(ssrc)
						rtcpUsed = append(rtcpUsed, idx)
					}
				}
				sendRTP(tc.before)
				sendRTCP(tc.rtcpBefore)
				saved := l.ssrcStates(nil)
				sendRTP(tc.lag)
				sendRTCP(tc.rtcpLag)
				var top uint64
				for _, i := range used {
					top = max(top, i)
				}
				var rtcpTop uint32
				for _, i := range rtcpUsed {
					rtcpTop = max(rtcpTop, i)
				}

				// The restart: fresh contexts under the same keys.
				enc := fresh()
				applySSRCs(nil, enc, saved, nil)

				// The stream would carry on through its offsets at seq (or
				// anywhere below): refused if that index was used.
				for _, s := range []uint16{seq, seq - 1, tc.seq0} {
					_, err := enc.EncryptRTP(nil, rtpPacket(s, 0, ssrc), nil)
					if err == nil {
						idx, _ := enc.SRTPIndex(ssrc)
						if idx <= top {
							t.Fatalf("seq %d went out at index %#x, at or below %#x used before the restart", s, idx, top)
						}
						break
					}
					if !errors.Is(err, forksrtp.ErrIndexBelowFloor) {
						t.Fatal(err)
					}
				}
				// Where the outbound stream resumes goes out above every index used.
				enc = fresh()
				applySSRCs(nil, enc, saved, nil)
				at := resumeAbove(rewrite.Resumption{InSSRC: 0x1234, OutCeiling: tc.seq0 + uint16(tc.before)}, true, ssrc, saved)
				for i := range uint16(3) {
					if _, err := enc.EncryptRTP(nil, rtpPacket(at+i, 0, ssrc), nil); err != nil {
						t.Fatalf("resumed at seq %d: %v", at+i, err)
					}
					if idx, _ := enc.SRTPIndex(ssrc); idx <= top {
						t.Fatalf("resumed at seq %d: index %#x, at or below %#x used before the restart", at+i, idx, top)
					}
				}
				// SRTCP numbers on above every index used.
				if _, err := enc.EncryptRTCP(nil, rtcpReport(ssrc), nil); err != nil {
					t.Fatal(err)
				}
				if idx, _ := enc.Index(ssrc); idx <= rtcpTop {
					t.Fatalf("SRTCP index %d after the restart, at or below %d used before", idx, rtcpTop)
				}
			})
		}
	}
}

// rtcpReport is a receiver report from ssrc.
func rtcpReport(ssrc uint32) []byte {
	b, _ := (&rtcp.ReceiverReport{SSRC: ssrc}).Marshal()
	return b
}

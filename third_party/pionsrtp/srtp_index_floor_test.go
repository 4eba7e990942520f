// SPDX-FileCopyrightText: 2026 The Strait authors
// SPDX-License-Identifier: MIT

package srtp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
)

// TestSRTPIndexFloor: an encrypting context given a floor estimates the
// ROC of what follows from it, across a wrap included (RFC 3711 section
// 3.3.1), and refuses every packet whose index would be below it (RFC
// 3711 section 9.2: no index twice under a key; RFC 7714 section 8.1:
// no nonce twice), leaving its state as it was; the index each packet
// went out at is checked by decrypting it with upstream at that ROC.
func TestSRTPIndexFloor(t *testing.T) {
	const ssrc = 0x5eed
	type step struct {
		seq uint16
		roc uint32 // the ROC it goes out at
		ok  bool   // false: refused, below the floor
	}
	for _, profile := range []ProtectionProfile{ProtectionProfileAes128CmHmacSha1_80, ProtectionProfileAeadAes128Gcm} {
		for _, tc := range []struct {
			name  string
			floor uint64
			steps []step
		}{
			{"across a wrap", 3<<16 | 0xfff0, []step{{0xfff0, 3, true}, {0xffff, 3, true}, {0, 4, true}, {5, 4, true}, {0xffef, 0, false}}},
			{"below the floor", 3<<16 | 0x1000, []step{{0x0fff, 0, false}, {0x1000, 3, true}, {0x0800, 0, false}, {0x9000, 3, true}, {0x0fff, 4, true}}}, // the last: 2^15 behind 0x9000 is ahead, past the wrap
			{"the ROC before", 3<<16 | 0x1000, []step{{0x9001, 0, false}, {0x1001, 3, true}}},
			{"on a wrap", 4 << 16, []step{{0xffff, 0, false}, {0, 4, true}, {1, 4, true}}},
			{"none", 0, []step{{0x4242, 0, true}, {0x4243, 0, true}}},
		} {
			t.Run(fmt.Sprintf("%v/%s", profile, tc.name), func(t *testing.T) {
				p := newDiffPair(t, profile, rand.New(rand.NewPCG(5, 6)))
				p.enc.SetSRTPIndexFloor(ssrc, tc.floor)
				for _, s := range tc.steps {
					before, _ := p.enc.SRTPIndex(ssrc)
					plain, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: s.seq}, Payload: []byte("payload")}).Marshal()
					if err != nil {
						t.Fatal(err)
					}
					out, err := p.enc.EncryptRTP(nil, plain, nil)
					if !s.ok {
						if !errors.Is(err, ErrIndexBelowFloor) {
							t.Fatalf("seq %#x: %v, want ErrIndexBelowFloor", s.seq, err)
						}
						if after, _ := p.enc.SRTPIndex(ssrc); after != before {
							t.Fatalf("seq %#x refused but the index moved from %#x to %#x", s.seq, before, after)
						}
						continue
					}
					if err != nil {
						t.Fatalf("seq %#x: %v", s.seq, err)
					}
					p.upEnc.SetROC(ssrc, s.roc) // upstream, no replay window: decrypts at exactly this ROC
					if _, err := p.upEnc.DecryptRTP(nil, out, nil); err != nil {
						t.Fatalf("seq %#x did not go out at ROC %d: %v", s.seq, s.roc, err)
					}
				}
			})
		}
	}
}

// TestSetSRTPIndex: a decrypting context set at a saved position follows a
// sender that went on across a wrap after it (the ROC estimated from the
// position, RFC 3711 section 3.3.1), where SetROC at the saved ROC fails
// the packet.
func TestSetSRTPIndex(t *testing.T) {
	const ssrc = 0xb0b
	for _, profile := range []ProtectionProfile{ProtectionProfileAes128CmHmacSha1_80, ProtectionProfileAeadAes128Gcm} {
		t.Run(profile.String(), func(t *testing.T) {
			p := newDiffPair(t, profile, rand.New(rand.NewPCG(8, 9)))
			p.upEnc.SetROC(ssrc, 6)
			plain, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: 0x0010}, Payload: []byte("after the wrap")}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			pkt, err := p.upEnc.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.dec.SetROC(ssrc, 5)
			if _, err := p.dec.DecryptRTP(nil, pkt, nil); err == nil {
				t.Fatal("decrypted at the saved ROC 5 a packet sent at ROC 6")
			}
			p.dec.SetSRTPIndex(ssrc, 5<<16|0xf000)
			if _, err := p.dec.DecryptRTP(nil, pkt, nil); err != nil {
				t.Fatalf("from index 5:0xf000, the packet at 6:0x0010: %v", err)
			}
			if idx, _ := p.dec.SRTPIndex(ssrc); idx != 6<<16|0x0010 {
				t.Fatalf("index %#x after it, want 0x60010", idx)
			}
		})
	}
}

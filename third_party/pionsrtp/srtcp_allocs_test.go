package srtp

import (
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"

	"github.com/strait-sbc/strait/internal/racecheck"
)

// TestSRTCPFailurePathAllocs: a forged, damaged or replayed SRTCP packet
// allocates nothing (TestPacketPathAllocs pins SRTP's), whether it claims
// to be encrypted or not: the E bit is the sender's to choose (RFC 3711
// section 3.4), so anyone can send forged packets with it clear, and
// AES-GCM then authenticates the whole packet as AAD (RFC 7714 section
// 9.3), which upstream copies into a new buffer per packet.
func TestSRTCPFailurePathAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	for _, profile := range []ProtectionProfile{ProtectionProfileAes128CmHmacSha1_80, ProtectionProfileAeadAes128Gcm} {
		t.Run(profile.String(), func(t *testing.T) {
			p := newDiffPair(t, profile, rand.New(rand.NewPCG(3, 3)))
			plain, err := (&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: 9}}}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var h rtcp.Header
			var replayed, damaged, clearE []byte
			buf := make([]byte, 0, 256)
			trailer := srtcpIndexSize
			if tag, _ := profile.AuthTagRTCPLen(); tag > 0 {
				trailer += tag
			}
			allocs := testing.AllocsPerRun(200, func() {
				buf = append(buf[:0], plain...)
				out, err := p.enc.EncryptRTCP(buf[:0], buf, &h)
				if err != nil {
					t.Fatal(err)
				}
				replayed = append(replayed[:0], out...)
				damaged = append(damaged[:0], out...)
				damaged[10] ^= 1
				clearE = append(clearE[:0], out...)
				clearE[len(clearE)-trailer] &^= 0x80 // E bit clear: "sent unencrypted"
				for _, forged := range [][]byte{damaged, clearE} {
					if _, err := p.dec.DecryptRTCP(forged, forged, &h); outcome(nil, err) != "auth" {
						t.Fatalf("forged: %v", err)
					}
				}
				if _, err := p.dec.DecryptRTCP(out, out, &h); err != nil {
					t.Fatal(err)
				}
				if _, err := p.dec.DecryptRTCP(replayed, replayed, &h); outcome(nil, err) != "replay" {
					t.Fatalf("replay: %v", err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per round, want 0", allocs)
			}
		})
	}
}

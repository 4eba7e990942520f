package relay

import (
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"

	forksrtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// TestReplayWindowMatchesPion drives replayWindow and pion's own sliding
// window (what srtp.SRTPReplayProtection(128) builds) with the same
// indexes, in order, reordered, repeated, far jumps and the edges of the
// window, authenticated or not, and requires the same answers.
func TestReplayWindowMatchesPion(t *testing.T) {
	for _, max := range []uint64{maxSRTPIndex, maxSRTCPIndex} {
		for seed := uint64(1); seed <= 20; seed++ {
			r := rand.New(rand.NewPCG(seed, max))
			ours := &replayWindow{max: max}
			pion := replaydetector.New(replayWindowBits, max).(replaydetector.CheckAccepter)
			var idx uint64
			if seed%2 == 0 {
				idx = max - 300 // the top of the index space
			}
			for i := 0; i < 5000; i++ {
				var seq uint64
				switch r.IntN(10) {
				case 0: // repeat or reorder within and around the window
					seq = idx - uint64(r.IntN(260))
				case 1: // a jump
					seq = idx + uint64(r.IntN(300))
				case 2: // the window's edges
					seq = idx - 127 - uint64(r.IntN(3))
				case 3:
					seq = uint64(r.IntN(3)) // index 0 and its neighbours
				default:
					seq = idx + 1
				}
				if seq > idx && seq <= max+2 {
					idx = min(seq, max)
				}
				a, b := ours.CheckSeq(seq), pion.CheckSeq(seq)
				if a.Passed() != b.Passed() {
					t.Fatalf("max %d seed %d step %d: index %d: ours passed %v, pion %v", max, seed, i, seq, a.Passed(), b.Passed())
				}
				if r.IntN(8) == 0 {
					continue // failed authentication: never accepted
				}
				if la, lb := ours.Accept(a), pion.Accept(b); la != lb {
					t.Fatalf("max %d seed %d step %d: accepting %d: ours latest %v, pion %v", max, seed, i, seq, la, lb)
				}
			}
		}
	}
}

func BenchmarkReplayWindow(b *testing.B) {
	for _, c := range []struct {
		name string
		d    replaydetector.CheckAccepter
	}{
		{"strait", &replayWindow{max: maxSRTPIndex}},
		{"pion", replaydetector.New(replayWindowBits, maxSRTPIndex).(replaydetector.CheckAccepter)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			seq := uint64(1)
			for b.Loop() {
				c.d.Accept(c.d.CheckSeq(seq))
				seq++
			}
		})
	}
}

// BenchmarkDecryptManyLegs decrypts one packet of each of 1 000 inbound
// contexts in turn, as a node with 1 000 browsers does: each context's
// state is out of cache by its next packet, so what the per-packet work
// touches weighs more than the instructions (a single hot context hides
// it). "pion" is upstream pion/srtp with its own replay window,
// "pionwindow" upstream with replayWindow, "fork" the relay's contexts
// (third_party/pionsrtp with replayWindow).
func BenchmarkDecryptManyLegs(b *testing.B) {
	const legs = 1000
	type decrypter interface {
		DecryptRTP(dst, encrypted []byte, header *rtp.Header) ([]byte, error)
	}
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		for _, variant := range []string{"pion", "pionwindow", "fork"} {
			b.Run(profileName(profile)+"/"+variant, func(b *testing.B) {
				kl, _ := profile.KeyLen()
				sl, _ := profile.SaltLen()
				decs := make([]decrypter, legs)
				encs := make([]*srtp.Context, legs)
				for i := range decs {
					key, salt := make([]byte, kl), make([]byte, sl)
					key[0], key[1] = byte(i), byte(i>>8)
					var err error
					switch variant {
					case "pion":
						decs[i], err = srtp.CreateContext(key, salt, profile, srtp.SRTPReplayProtection(ReplayWindow), srtp.SRTCPReplayProtection(ReplayWindow))
					case "pionwindow":
						decs[i], err = srtp.CreateContext(key, salt, profile,
							srtp.SRTPReplayDetectorFactory(func() replaydetector.ReplayDetector { return &replayWindow{max: maxSRTPIndex} }),
							srtp.SRTCPReplayDetectorFactory(func() replaydetector.ReplayDetector { return &replayWindow{max: maxSRTCPIndex} }))
					default:
						decs[i], err = forksrtp.CreateContext(key, salt, profile, replayOptions()...)
					}
					if err != nil {
						b.Fatal(err)
					}
					encs[i], _ = srtp.CreateContext(key, salt, profile)
				}
				const round = 64 // packets per leg encrypted ahead
				pkts := make([][]byte, legs*round)
				seq := uint16(1)
				refill := func() {
					for r := 0; r < round; r++ {
						for i := range encs {
							p, err := encs[i].EncryptRTP(pkts[r*legs+i][:0], rtpPacket(seq+uint16(r), 0, 0xb0b+uint32(i)), nil)
							if err != nil {
								b.Fatal(err)
							}
							pkts[r*legs+i] = p
						}
					}
					seq += round
				}
				for i := range pkts {
					pkts[i] = make([]byte, 0, 256)
				}
				var hdr rtp.Header
				b.ReportAllocs()
				b.ResetTimer()
				for n := 0; n < b.N; {
					b.StopTimer()
					refill()
					b.StartTimer()
					for j := 0; j < len(pkts) && n < b.N; j, n = j+1, n+1 {
						p := pkts[j]
						if _, err := decs[j%legs].DecryptRTP(p, p, &hdr); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

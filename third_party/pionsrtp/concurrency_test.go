package srtp

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestContextsShareNothing: contexts are used by one goroutine each (the
// relay holds a leg direction's lock around each of its contexts), but
// different contexts run on different workers at once. Nothing one context
// keeps per packet (the HMAC states and digest, the counter-mode keystream
// block, the GCM IVs, the last and spare SSRC states) may be shared with
// another: run with -race, any package-level scratch buffer is a race, and
// a state shared between keys shows as bytes that differ from upstream's.
// Each goroutine interleaves several sessions with their own keys on every
// profile, RTP and RTCP, and compares each packet with upstream's.
func TestContextsShareNothing(t *testing.T) {
	const goroutines, sessions, packets = 4, 3, 150
	var wg sync.WaitGroup
	for g := range goroutines {
		r := rand.New(rand.NewPCG(uint64(g), 9))
		var pairs []*diffPair
		for i := range sessions * len(diffProfiles) {
			pairs = append(pairs, newDiffPair(t, diffProfiles[i%len(diffProfiles)], r))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hUp, hFork rtp.Header
			var cUp, cFork rtcp.Header
			for n := range packets {
				p := pairs[r.IntN(len(pairs))]
				ssrc := uint32(g)<<8 | uint32(n%2)
				var pkt []byte
				var err error
				rtcpPkt := n%5 == 4
				if rtcpPkt {
					pkt, err = (&rtcp.ReceiverReport{SSRC: ssrc, Reports: []rtcp.ReceptionReport{{SSRC: uint32(n)}}}).Marshal()
				} else {
					pkt, err = (&rtp.Packet{
						Header:  rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: uint16(n), Timestamp: uint32(n) * 160},
						Payload: randomBytes(r, 20+r.IntN(300)),
					}).Marshal()
				}
				if err != nil {
					t.Error(err)
					return
				}
				var up, fork, upPlain, forkPlain []byte
				var err1, err2, err3, err4 error
				buf := make([]byte, len(pkt), len(pkt)+64)
				copy(buf, pkt)
				if rtcpPkt {
					up, err1 = p.upEnc.EncryptRTCP(nil, pkt, &cUp)
					fork, err2 = p.enc.EncryptRTCP(buf[:0], buf, &cFork)
				} else {
					up, err1 = p.upEnc.EncryptRTP(nil, pkt, &hUp)
					fork, err2 = p.enc.EncryptRTP(buf[:0], buf, &hFork)
				}
				if err1 != nil || err2 != nil || !bytes.Equal(up, fork) {
					t.Errorf("goroutine %d packet %d: protected packets differ: %x (%v), %x (%v)", g, n, up, err1, fork, err2)
					return
				}
				if rtcpPkt {
					upPlain, err3 = p.upDec.DecryptRTCP(nil, up, &cUp)
					forkPlain, err4 = p.dec.DecryptRTCP(fork, fork, &cFork)
				} else {
					upPlain, err3 = p.upDec.DecryptRTP(nil, up, &hUp)
					forkPlain, err4 = p.dec.DecryptRTP(fork, fork, &hFork)
				}
				if err3 != nil || err4 != nil || !bytes.Equal(upPlain, pkt) || !bytes.Equal(forkPlain, pkt) {
					t.Errorf("goroutine %d packet %d: round trip differs: %v, %v", g, n, err3, err4)
					return
				}
			}
		}()
	}
	wg.Wait()
}

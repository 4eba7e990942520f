package srtp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestMalformedPackets: packets cut short or whose header points past
// their end are refused with an error, never a panic, in every
// configuration, as upstream refuses them; encrypting them fails or
// protects them as upstream does.
func TestMalformedPackets(t *testing.T) {
	hdr := []byte{0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}
	with := func(first byte, tail ...byte) []byte {
		return append(append([]byte{first}, hdr[1:]...), tail...)
	}
	rtpCases := map[string][]byte{
		"empty":                           {},
		"one byte":                        {0x80},
		"header cut short":                hdr[:11],
		"header only":                     hdr,
		"CSRC count past the end":         with(0x8f, 1, 2, 3, 4),
		"extension header cut short":      with(0x90, 0xbe, 0xde),
		"extension length past the end":   with(0x90, 0xbe, 0xde, 0xff, 0xff, 1, 2, 3, 4),
		"extension one word past the end": with(0x90, 0xbe, 0xde, 0, 2, 1, 2, 3, 4),
		"padding longer than the packet":  with(0xa0, 1, 2, 3, 0xff),
		"payload shorter than a tag":      with(0x80, 1, 2, 3),
		"CSRCs and extension past the end": with(0x92, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0x10, 0,
			1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20),
	}
	rtcpCases := map[string][]byte{
		"empty":                        {},
		"three bytes":                  {0x81, 0xc9, 0},
		"header without SSRC":          {0x81, 0xc9, 0, 1},
		"header only":                  {0x81, 0xc9, 0, 1, 0, 0, 0, 5},
		"no room for index and tag":    {0x81, 0xc9, 0, 1, 0, 0, 0, 5, 0x80, 0, 0, 1},
		"length field past the end":    {0x81, 0xc9, 0xff, 0xff, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x80, 0, 0, 1},
		"index only, E set, tag short": append([]byte{0x81, 0xc9, 0, 1, 0, 0, 0, 5}, bytes.Repeat([]byte{0x80}, 13)...),
	}
	for c := range uint16(8 * len(configProfiles)) {
		cfg := decodeConfig(uint16(c%8)<<8 | c/8)
		t.Run(cfg.String(), func(t *testing.T) {
			p := newConfigPair(t, cfg, rand.New(rand.NewPCG(uint64(c), 5)))
			var hUp, hFork rtp.Header
			var cUp, cFork rtcp.Header
			for name, pkt := range rtpCases {
				compareRTP(t, p, 0, pkt, &hUp, &hFork)
				in := bytes.Clone(pkt)
				if _, err := p.dec.DecryptRTP(in, in, &hFork); err == nil {
					t.Errorf("RTP %s: accepted", name)
				}
				up, err1 := p.upEnc[0].EncryptRTP(nil, pkt, &hUp)
				fork, err2 := p.enc[0].EncryptRTP(nil, pkt, &hFork)
				if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
					t.Errorf("RTP %s: EncryptRTP differs: upstream %x (%v), fork %x (%v)", name, up, err1, fork, err2)
				}
			}
			for name, pkt := range rtcpCases {
				compareRTCP(t, p, 0, pkt, &cUp, &cFork)
				in := bytes.Clone(pkt)
				if _, err := p.dec.DecryptRTCP(in, in, &cFork); err == nil {
					t.Errorf("RTCP %s: accepted", name)
				}
				up, err1 := p.upEnc[0].EncryptRTCP(nil, pkt, &cUp)
				fork, err2 := p.enc[0].EncryptRTCP(nil, pkt, &cFork)
				if (err1 == nil) != (err2 == nil) || !bytes.Equal(up, fork) {
					t.Errorf("RTCP %s: EncryptRTCP differs: upstream %x (%v), fork %x (%v)", name, up, err1, fork, err2)
				}
			}
		})
	}
}

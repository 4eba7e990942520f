package rewrite

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// srtpLeg is the browser-facing leg: the SBC's encrypting context and the
// browser's decrypting one, with a replay window of 64 (RFC 3711's minimum
// and pion's default; libsrtp's is 128 and Chrome's 1024, which makes no
// difference to jumps of thousands).
type srtpLeg struct {
	t        *testing.T
	enc, dec *srtp.Context
	ok, fail int
	lastSeq  uint16 // of the last packet the browser decrypted
}

func newSRTPLeg(t *testing.T) *srtpLeg {
	key := []byte("0123456789abcdef")
	salt := []byte("saltsaltsaltsa")
	enc, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.SRTPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
	return &srtpLeg{t: t, enc: enc, dec: dec}
}

// deliver encrypts the plain RTP packet b and has the browser decrypt it.
func (l *srtpLeg) deliver(b []byte) {
	ct, err := l.enc.EncryptRTP(nil, b, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	var h rtp.Header
	pt, err := l.dec.DecryptRTP(nil, ct, &h)
	if err != nil {
		l.fail++
		return
	}
	if string(pt[h.MarshalSize():]) != string(b[12:]) {
		l.t.Fatalf("seq %d decrypted to a different payload", h.SequenceNumber)
	}
	l.ok++
	l.lastSeq = h.SequenceNumber
}

// TestOutStreamSRTPAfterHold is the reason OutStream exists: a PBX puts the
// call on hold, plays nothing for 15 minutes and resumes with a new
// sequence base. Relayed as is, the browser's SRTP receiver rejects every
// packet after the restart as a replay; normalised, all of them decrypt.
func TestOutStreamSRTPAfterHold(t *testing.T) {
	tests := []struct {
		name       string
		seq0, seq1 uint16 // first sequence number before and after hold
	}{
		{"backward 20000", 30000, 30000 + 300 - 20000},
		{"forward 40000", 30000, 30000 + 300 + 40000 - 65536},
		// The stream wraps (ROC 1, sequence 163) and restarts at 40000,
		// which the receiver takes for ROC 0: far behind, so a replay.
		{"restart that mis-guesses the ROC", 65400, 40000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var normalised, raw *srtpLeg = newSRTPLeg(t), newSRTPLeg(t)
			s := OutStream{RewriteSSRC: true, SSRC: localSSRC}
			now := int64(time.Hour)
			send := func(seq uint16, ts uint32) {
				b := g711Packet(seq, ts, localSSRC) // the unnormalised PBX uses our SSRC
				raw.deliver(b)
				h, err := ParseRTP(b)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Rewrite(b, h, 0, pcmuRate, now); err != nil {
					t.Fatal(err)
				}
				normalised.deliver(b)
				now += int64(ptime)
			}
			for i := range 300 {
				send(tt.seq0+uint16(i), 1000+uint32(i)*tsPerFrame)
			}
			lastBefore := normalised.lastSeq
			now += int64(holdTime)
			for i := range 300 {
				send(tt.seq1+uint16(i), 0xabcdef00+uint32(i)*tsPerFrame)
			}
			if normalised.fail != 0 || normalised.ok != 600 {
				t.Errorf("normalised: %d decrypted, %d failed; want 600, 0", normalised.ok, normalised.fail)
			}
			if normalised.lastSeq != lastBefore+300 {
				t.Errorf("normalised: last seq %d, want %d", normalised.lastSeq, lastBefore+300)
			}
			t.Logf("unnormalised: %d decrypted, %d failed", raw.ok, raw.fail)
			if raw.fail < 300 {
				t.Errorf("unnormalised: only %d of 300 failed; the test no longer shows the problem", raw.fail)
			}
		})
	}
}

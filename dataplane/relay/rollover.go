package relay

import (
	"errors"

	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// A WebRTC peer starts sending SRTP as soon as its side of the DTLS
// handshake is done, and the node installs its keys a moment later (the
// handshake ends on the leg's DTLS goroutine while the worker goes on
// with the packets behind it): the first packets of a leg can meet no
// context and are dropped (drop_not_ready). RFC 3711 section 3.3.1 starts
// the receiver's rollover counter (ROC) at 0 with the first packet it
// gets; if the sender's sequence number wrapped within the packets lost
// before the keys were there (a sender may start anywhere in the 16-bit
// space: libwebrtc keeps below 2^15, pion and libdatachannel do not), the
// sender is at ROC 1 and every later packet fails authentication: the
// leg's direction never flows. One session in 1 000 did that in a bench
// run (first sequence number 65535).
//
// So until the first packet of a leg's context authenticates, a packet
// that fails with an SSRC the context has never authenticated is tried
// once more with ROC 1 (rtpengine guesses ROC+1, ROC-1 and 0 on every
// failure; this guesses only where the node itself may have lost the
// wrap). A failed guess puts the SSRC's state back as new. An SSRC the
// context knows from elsewhere (a session restored with its rollover
// counters) is never guessed on; one guessed on before may be again (a
// forged packet with the real SSRC must not use up the real stream's
// guess). A leg guesses on at most maxROCGuesses SSRCs, so a peer spraying
// forged SSRCs before its first real packet grows pion's per-SSRC table by
// no more than that.
const (
	maxROCGuesses = 8
	// rocGuessSeq: only a sequence number in the first half of the space
	// can follow a wrap the node missed while installing its keys.
	rocGuessSeq = 0x8000
)

// rocGuesses are the SSRCs a leg's context was given a rollover guess on.
// Guarded by the leg's inMu, reset with its context.
type rocGuesses struct {
	ssrcs [maxROCGuesses]uint32
	n     uint8
}

// may reports whether ssrc may get a guess, and takes a place for it.
func (g *rocGuesses) may(ssrc uint32, known bool) bool {
	for _, s := range g.ssrcs[:g.n] {
		if s == ssrc {
			return true
		}
	}
	if known || int(g.n) == len(g.ssrcs) {
		return false
	}
	g.ssrcs[g.n] = ssrc
	g.n++
	return true
}

// decryptFirstRTP decrypts an RTP packet with a WebRTC leg's context dec
// before the context has authenticated anything (l.decProven false).
// Called with l.inMu held. The packet is kept in the worker's scratch
// buffer first: AEAD decryption in place destroys it when it fails.
func (w *worker) decryptFirstRTP(l *Leg, dec *srtp.Context, buf []byte, n int) ([]byte, error) {
	saved := w.scratch[:copy(w.scratch, buf[:n])]
	out, err := dec.DecryptRTP(buf[:n], buf[:n], &w.rtpHdr)
	if err == nil {
		l.decProven = true
		return out, nil
	}
	ssrc, seq := w.rtpHdr.SSRC, w.rtpHdr.SequenceNumber
	if !errors.Is(err, srtp.ErrFailedToVerifyAuthTag) || seq >= rocGuessSeq || len(saved) < n {
		return nil, err
	}
	if _, known := dec.ROC(ssrc); !l.rocGuesses.may(ssrc, known) {
		return nil, err
	}
	copy(buf, saved)
	dec.SetROC(ssrc, 1)
	if out, err2 := dec.DecryptRTP(buf[:n], buf[:n], &w.rtpHdr); err2 == nil {
		l.decProven = true
		return out, nil
	}
	dec.SetROC(ssrc, 0) // as new: index 0, nothing processed
	return nil, err
}

package relay

import (
	"github.com/strait-sbc/strait/dataplane/rewrite"
)

// normalise rewrites an outbound RTP packet for its destination stream:
// payload type, and sequence/timestamp continuity and SSRC (see
// rewrite.OutStream). Called with the destination leg's outMu held.
func (st *Stream) normalise(pkt []byte, pt uint8, dsc *streamConfig, now int64) error {
	h, err := rewrite.ParseRTP(pkt)
	if err != nil {
		return err
	}
	st.out.RewriteSSRC = dsc.rewriteSSRC
	st.out.SSRC = st.localSSRC
	_, err = st.out.Rewrite(pkt, h, pt, dsc.clock(pt), now)
	return err
}

// mappings writes into t how the OutStreams of a leg's streams (lc) map the
// streams they send. Called with the leg's outMu held.
func mappings(lc *legConfig, t *rewrite.StreamTable) {
	for i := range lc.streams {
		if i < len(t) {
			t[i] = lc.streams[i].s.out.Mapping()
		}
	}
}

// receivedMappings snapshots, under src's outMu, how the streams src
// receives were rewritten toward it. It is taken before the destination's
// lock so that no worker ever holds two legs' locks at once (two workers
// relaying RTCP in opposite directions would otherwise deadlock).
func receivedMappings(src *Leg, lc *legConfig, t *rewrite.StreamTable) {
	src.outMu.Lock()
	mappings(lc, t)
	src.outMu.Unlock()
}

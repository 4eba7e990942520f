package node

import (
	"testing"

	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// TestRestoreOfAnEarlyRecord: a record read early in a call (the keeper
// writes a session once its setup settled, so a crash seconds after the
// answer restarts from one) still carries the call on both ways: read
// right after the DTLS handshake before any media, after media one way
// only, after media both ways.
func TestRestoreOfAnEarlyRecord(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b2p, p2b int // packets relayed each way before the record is read
	}{
		{"after DTLS, before media", 0, 0},
		{"after browser media only", 5, 0},
		{"after plain media only", 0, 5},
		{"after media both ways", 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestNode(t, nil)
			c := mediatest.NewCall(t, a, mediatest.CallOptions{})
			if tc.b2p > 0 {
				c.BrowserToPlain("before", tc.b2p)
			}
			if tc.p2b > 0 {
				c.PlainToBrowser("before-p2b", 100, tc.p2b)
			}
			sv := savedCopy(t, a, c.Sess.Id)
			t.Logf("saved leg 0: ssrcs %+v keys %v", sv.Legs[0].SSRCs, len(sv.Legs[0].LocalKey) > 0)
			for i, l := range sv.Legs {
				for j, st := range l.Streams {
					t.Logf("saved leg %d stream %d: out %+v", i, j, st.Out)
				}
			}
			c.N = restartNode(t, a, &sv)
			c.BrowserToPlain("after", 5)
			c.PlainToBrowser("after-p2b", 100+uint16(tc.p2b)+50, 5)
		})
	}
}

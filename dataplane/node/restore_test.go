package node

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/relay"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// A session saved by one node and restored by the next one on the same
// ports (an all-in-one strait restarting) carries the call on: a real
// WebRTC peer (pion), which does no new ICE or DTLS, keeps sending and
// receiving SRTP under the keys of its one handshake, and the plain side
// keeps its port. Both directions crossed a sequence-number wrap before
// the save, so they only work if the rollover counters came back too (RFC
// 3711 section 3.3.1).
func TestRestoredSessionCarriesMediaOn(t *testing.T) {
	a := newTestNode(t, nil)
	c := mediatest.NewCall(t, a, mediatest.CallOptions{})
	c.BSeq = 65530
	c.BrowserToPlain("before", 10)
	c.PlainToBrowser("before-p2b", 65530, 10)

	sv := savedCopy(t, a, c.Sess.Id)
	var dec, enc bool
	for _, st := range sv.Legs[0].SSRCs {
		dec = dec || (st.HasDec && st.DecROC == 1)
		enc = enc || (st.HasEnc && st.EncROC == 1)
	}
	if !dec || !enc {
		t.Fatalf("saved rollover state %+v, want ROC 1 each way after the wraps", sv.Legs[0].SSRCs)
	}
	n := restartNode(t, a, &sv)
	got, err := n.GetSession(ctx(t), c.Sess.Id)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range got.Legs {
		w := c.Sess.Legs[i]
		if l.LocalUfrag != w.LocalUfrag || l.LocalPwd != w.LocalPwd || l.Streams[0].LocalAddr != w.Streams[0].LocalAddr ||
			l.Streams[0].LocalSsrc != w.Streams[0].LocalSsrc {
			t.Fatalf("leg %d restored as %v, was %v", i, l, w)
		}
	}
	if got.Legs[0].State != pb.LegState_LEG_STATE_CONNECTED || got.Legs[0].SrtpProfile == "" {
		t.Fatalf("restored WebRTC leg %v, want connected with its SRTP profile", got.Legs[0])
	}
	c.N = n
	c.BrowserToPlain("after", 5)
	c.PlainToBrowser("after-p2b", 20, 5)
}

// restartNode abandons a (as a crash would: nothing reaches the peers)
// and starts a node on its ports that restores sv.
func restartNode(t *testing.T, a *Node, sv *relay.SavedSession) *Node {
	t.Helper()
	cfg := a.cfg
	cfg.Certificate = a.eng.Config().Certificate
	a.Abandon()
	// The old node's io_uring lets go of its sockets a moment after
	// Close: the kernel tears a ring down in the background, which took
	// over 5 s on a 2-core machine at load 37. The wait is for that
	// condition, bounded well above it.
	var n *Node
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var inUse *relay.PortsInUseError
		if n, err = New(cfg); !errors.As(err, &inUse) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.Engine().RestoreSession(sv); err != nil {
		t.Fatal(err)
	}
	return n
}

// savedCopy is what a's session id saves, through JSON as the store keeps it.
func savedCopy(t *testing.T, a *Node, id string) relay.SavedSession {
	t.Helper()
	s, ok := a.Engine().Session(id)
	if !ok {
		t.Fatal("no session")
	}
	b, err := json.Marshal(s.Save())
	if err != nil {
		t.Fatal(err)
	}
	var sv relay.SavedSession
	if err := json.Unmarshal(b, &sv); err != nil {
		t.Fatal(err)
	}
	return sv
}

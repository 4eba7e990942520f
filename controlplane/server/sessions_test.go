package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/relay"
	"github.com/strait-sbc/strait/internal/racecheck"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func keeperSession() *pb.CreateSessionRequest {
	leg := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Media: "audio",
		Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}, Plain: &pb.PlainSpec{}}}}
	return &pb.CreateSessionRequest{Legs: []*pb.LegSpec{leg}}
}

// The keeper writes a session once its stamp has held still for a sweep,
// keeps the record while the session lives, and deletes it the sweep
// after the session ended; a final sweep writes what has not settled.
func TestSessionKeeperSweeps(t *testing.T) {
	n := benchNode(t)
	store := state.NewMemory()
	w := state.NewWriter(state.WriterConfig{Store: store, Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { w.Close() })
	k := newSessionKeeper(n.Engine(), w, slog.New(slog.DiscardHandler), nil)
	ctx := context.Background()
	records := func() map[string][]byte {
		t.Helper()
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		recs, err := store.Load(ctx, state.Sessions)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	a, err := n.CreateSession(ctx, keeperSession())
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.CreateSession(ctx, keeperSession())
	if err != nil {
		t.Fatal(err)
	}
	k.sweep(false) // first seen: settling
	if r := records(); len(r) != 0 {
		t.Fatalf("%d records after the first sweep, want 0 (settling)", len(r))
	}
	k.sweep(false) // unchanged for a sweep: written
	if r := records(); len(r) != 2 || r[a.GetId()] == nil || r[b.GetId()] == nil {
		t.Fatalf("records %v after the second sweep, want both sessions'", keys(r))
	}
	if _, err := n.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: a.GetId()}); err != nil {
		t.Fatal(err)
	}
	k.sweep(false)
	if r := records(); len(r) != 1 || r[b.GetId()] == nil {
		t.Fatalf("records %v after %s ended, want only %s", keys(r), a.GetId(), b.GetId())
	}
	c, err := n.CreateSession(ctx, keeperSession())
	if err != nil {
		t.Fatal(err)
	}
	k.finish() // final: c written without settling
	if r := records(); len(r) != 2 || r[c.GetId()] == nil {
		t.Fatalf("records %v after the final sweep, want %s and %s", keys(r), b.GetId(), c.GetId())
	}
	if len(k.changed) != 0 || len(k.stamps) != 2 {
		t.Errorf("keeper holds %d changed, %d stamps; want 0, 2", len(k.changed), len(k.stamps))
	}
}

// A sweep over sessions that did not change allocates only the engine's
// list of them: no map of the live ones per sweep (issue 10: thousands
// of sessions, five sweeps a second).
func TestSessionKeeperSweepAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates (test.sh runs this without it)")
	}
	n := benchNode(t)
	w := state.NewWriter(state.WriterConfig{Store: state.NewMemory(), Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { w.Close() })
	k := newSessionKeeper(n.Engine(), w, slog.New(slog.DiscardHandler), nil)
	for range 16 {
		if _, err := n.CreateSession(context.Background(), keeperSession()); err != nil {
			t.Fatal(err)
		}
	}
	k.sweep(false)
	k.sweep(false)
	if got := testing.AllocsPerRun(20, func() { k.sweep(false) }); got > 1 {
		t.Errorf("%.0f allocations per sweep of 16 settled sessions, want at most 1 (the engine's list)", got)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A session whose WebRTC leg completes its DTLS handshake after its record
// was written is written again at the next sweep, with the SRTP keys,
// without waiting for its setup to settle: a record without them restores
// a leg that never hears its browser again (the browser does no new
// handshake), which an e2e restart under load hit when strait was killed
// 2 s after the handshake. Fails without the keeper's urgent write.
func TestSessionKeeperWritesNewKeysAtOnce(t *testing.T) {
	n := benchNode(t)
	store := state.NewMemory()
	w := state.NewWriter(state.WriterConfig{Store: store, Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { w.Close() })
	k := newSessionKeeper(n.Engine(), w, slog.New(slog.DiscardHandler), nil)
	ctx := context.Background()
	saved := func(id string) *relay.SavedSession {
		t.Helper()
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		recs, err := store.Load(ctx, state.Sessions)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := recs[id]
		if !ok {
			return nil
		}
		var sv relay.SavedSession
		if err := json.Unmarshal(b, &sv); err != nil {
			t.Fatal(err)
		}
		return &sv
	}
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p, err := mediatest.NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	sess, err := n.CreateSession(ctx, &pb.CreateSessionRequest{Legs: []*pb.LegSpec{
		mediatest.WebRTCLeg(b, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(p, pb.PortMode_PORT_MODE_PER_LEG, false)}})
	if err != nil {
		t.Fatal(err)
	}
	k.sweep(false)
	k.sweep(false) // settled: written, no keys yet
	if sv := saved(sess.Id); sv == nil || len(sv.Legs[0].LocalKey) != 0 {
		t.Fatalf("record before the handshake: present %v, want one without keys", sv != nil)
	}
	if err := b.Accept(mediatest.AnswerSDP(sess.Legs[0], mediatest.BrowserAudio, "active", b.MID)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	mediatest.WaitLegState(t, n, sess.Id, 0, pb.LegState_LEG_STATE_CONNECTED)
	k.sweep(false) // the stamp moved with the keys: no settling for them
	if sv := saved(sess.Id); sv == nil || len(sv.Legs[0].LocalKey) == 0 || len(sv.Legs[0].RemoteKey) == 0 {
		t.Fatalf("record one sweep after the handshake holds no SRTP keys (present: %v)", sv != nil)
	}
}

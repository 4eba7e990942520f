package attack

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// echoPBX is a PBX's media endpoint that echoes every RTP packet it gets
// back to strait, and counts the legitimate caller's packets among them.
type echoPBX struct {
	*mediatest.Plain
	legit atomic.Int64
}

func newEchoPBX(t *testing.T, to func() netip.AddrPort) *echoPBX {
	t.Helper()
	p, err := mediatest.NewPlain(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	e := &echoPBX{Plain: p}
	go func() {
		for pk := range p.Received {
			if pk.RTP == nil {
				continue
			}
			if bytes.HasPrefix(pk.RTP.Payload, []byte("legit-")) {
				e.legit.Add(1)
			}
			p.SendRTP(to(), pk.RTP)
		}
	}()
	return e
}

// TestMediaMoveStalePackets is issue 9 item 7 against the binary: in a
// browser's call through the trunk, the PBX moves its media to a new port
// with a re-INVITE while its old port keeps sending (a media server's
// stragglers). Before: the stale packets re-latched the leg and no packet
// went to the new port. Now: the browser's media goes to the new port
// only, the old port gets none of it, and the stale packets are dropped
// and counted.
func TestMediaMoveStalePackets(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait)
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	pbx.ServeRegistrar(map[string]string{legitUser: legitPassword})
	tg := &target{e: e, t: t, cfg: targetConfig{Trunk: true}}
	tg.Strait = e.StartStrait(harness.StraitConfig{Upstream: "sip:" + pbx.Addr + ";transport=udp", Args: []string{"--log-level", "info"}})
	pbx.SetPeer(tg.SIPAddr)
	ctx := tg.ctx(60 * time.Second)

	browser, err := siptest.NewBrowser(tg.HTTPAddr, legitUser)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(browser.Close)
	if res, err := browser.Register(ctx, legitPassword, 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER through the trunk: %v %v", res, err)
	}
	media, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	call, err := browser.Invite(ctx, "1000", []byte(media.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := pbx.WaitCall(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	straitMedia, err := answerAddr(inc.Invite.Body()) // where the PBX sends: strait's offer
	if err != nil {
		t.Fatal(err)
	}
	to := func() netip.AddrPort { return straitMedia }
	old := newEchoPBX(t, to)
	if err := inc.Answer(siptest.PlainSDP(1, old.Addr(), old.RTCPAddr(), "sendrecv", false)); err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitAnswer(ctx, legitPassword)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("call through the trunk: %v %v", res, err)
	}
	if err := call.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := media.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := media.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := echoed(ctx, media, 20, 15); err != nil {
		t.Fatalf("before the move: %v", err)
	}

	// The old port keeps sending through the move and after it.
	stale := startAttack(t, 20*time.Second, func(ctx context.Context, a *attack) error {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(30000); seq < 32000; seq++ {
			p := bytes.Repeat([]byte{0x11}, 160)
			copy(p, "stale")
			if err := old.SendRTP(straitMedia, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq,
				Timestamp: uint32(seq) * 160, SSRC: 0x57a1e}, Payload: p}); err != nil {
				return err
			}
			a.Sent.Add(1)
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	})
	stale.waitUnderway(t)
	// The browser answers strait's re-offer (the PBX's move, passed on).
	call.OnReinvite(func(offer []byte) (int, []byte) {
		ans, err := media.Answer(string(offer))
		if err != nil {
			t.Errorf("the browser refuses the re-offer: %v", err)
			return 488, nil
		}
		return 200, []byte(ans)
	})
	moved := newEchoPBX(t, to)
	before := tg.counter("strait_dataplane_drops_total", "reason=unknown_source")
	if res, err := inc.Reinvite(ctx, siptest.PlainSDP(2, moved.Addr(), moved.RTCPAddr(), "sendrecv", false)); err != nil || res.StatusCode != 200 {
		t.Fatalf("the PBX's re-INVITE moving its media: %v %v", res, err)
	}
	oldGot := old.legit.Load()
	// Let stale packets arrive after the move before the browser speaks.
	waitFor(t, 10*time.Second, "stale packets after the move", func() (bool, string) {
		n := stale.Sent.Load()
		time.Sleep(100 * time.Millisecond)
		return stale.Sent.Load() > n+5, "the old port sends nothing"
	})
	if err := echoedFrom(ctx, media, 2000, 50, 45); err != nil {
		t.Fatalf("after the move (the new port got %d of the browser's packets, the old one %d more): %v\n%s",
			moved.legit.Load(), old.legit.Load()-oldGot, err, series(tg.scrape(), "strait_dataplane_drops_total"))
	}
	if got := old.legit.Load() - oldGot; got != 0 {
		t.Fatalf("the old port received %d of the browser's packets after the move", got)
	}
	if moved.legit.Load() < 45 {
		t.Fatalf("the new port received %d of the browser's 50 packets", moved.legit.Load())
	}
	n := tg.waitCounted(before+20, "strait_dataplane_drops_total", "reason=unknown_source")
	call.Hangup(ctx)
	stale.wait(t)
	t.Logf("after the move the new port got %d of the browser's packets, the old port 0 while it sent %d stale packets (%g counted as drop unknown_source)",
		moved.legit.Load(), stale.Sent.Load(), n-before)
}

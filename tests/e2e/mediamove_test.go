package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9 item 7, end to end (the dataplane's fix is its own; this checks
// the whole path with sipp and a browser): the PBX (sipp,
// uas_media_move.xml) moves its media two ports up by re-INVITE and keeps
// streaming from the old port. The browser's audio must go to the new port
// and stop going to the old one, however many stale packets come from it.
func TestMediaMoveStalePackets(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	c := capture(e)
	if c == nil {
		if harness.CI() {
			t.Fatal("CI=true and no packet capture: where packets go cannot be checked")
		}
		t.Skip("no packet capture (needs the network namespace, as root): where packets go cannot be checked")
	}
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_media_move.xml"})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's tone")
	old := 0
	e.Step("the browser's audio goes to the port the PBX answered with", 10*time.Second, func(ctx context.Context) error {
		var err error
		if old, err = answeredPort(pbx); err != nil {
			return err
		}
		return atLeast(ctx, c, old, minPackets)
	})
	e.Step("the PBX moves its media (re-INVITE) and keeps sending from the old port", 15*time.Second, func(ctx context.Context) error {
		acks := len(sentACKs(pbx))
		if err := alice.Eval(ctx, `sip.info("pbx-move")`, nil); err != nil {
			return err
		}
		for len(sentACKs(pbx)) == acks {
			select {
			case <-ctx.Done():
				return fmt.Errorf("the PBX's re-INVITE was not answered: %w", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	})
	e.Step("the browser's audio goes to the new port, not the old one", 15*time.Second, func(ctx context.Context) error {
		moved := pbx.MediaPort + 2
		if err := atLeast(ctx, c, moved, minPackets); err != nil {
			return err
		}
		before, newBefore := c.Port(old), c.Port(moved).Packets
		time.Sleep(time.Second) // a second of media: 50 packets, had they gone to the old port
		after, newAfter := c.Port(old), c.Port(moved).Packets
		if n := after.Packets - before.Packets; n > 2 {
			from := map[int]int{}
			for p, k := range after.From {
				if d := k - before.From[p]; d > 0 {
					from[p] = d
				}
			}
			return fmt.Errorf("%d packets went to the old port after the move, by source port %v (%d to the new port meanwhile, from %v; payload types %v; SSRCs to the old port %v, to the new %v)",
				n, from, newAfter-newBefore, c.Port(moved).From, after.RTP, after.SSRC, c.Port(moved).SSRC)
		}
		return nil
	})
	hangUp(e, alice)
	e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}

var audioPort = regexp.MustCompile(`(?m)^m=audio (\d+) `)

// answeredPort is the audio port in the PBX's first 200's SDP.
func answeredPort(pbx *harness.Sipp) (int, error) {
	for _, m := range pbx.Sent() {
		if len(m) > 14 && m[:14] == "SIP/2.0 200 OK" {
			if g := audioPort.FindStringSubmatch(m); g != nil {
				return strconv.Atoi(g[1])
			}
		}
	}
	return 0, fmt.Errorf("no 200 with SDP from the PBX")
}

// atLeast waits until port has received n packets.
func atLeast(ctx context.Context, c *harness.Capture, port, n int) error {
	for c.Port(port).Packets < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("port %d got %d packets, want %d: %w", port, c.Port(port).Packets, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

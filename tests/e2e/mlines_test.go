package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9 item 6: a browser's video call to an audio-only PBX connects
// with audio. With a video codec in --codecs strait offers the PBX the
// video too and the PBX (uas_audio_only.xml) answers with its audio m-line
// only, which strait reads as the video rejected; without one strait does
// not show the PBX the video at all. Either way the browser's answer keeps
// its two m-lines, video rejected, and the PBX's echo comes back.
func TestVideoCallToAudioOnlyPBX(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codecs []string
		lines  int
	}{{"video offered", []string{"PCMU", "PCMA", "telephone-event", "VP8"}, 2}, {"video not offered", nil, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
			pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_audio_only.xml", RTPEcho: true})
			args := []string{"--pbx-authenticates-calls"}
			for _, c := range tc.codecs {
				args = append(args, "--codecs", c)
			}
			s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: args})
			pages := e.StartPageServer(nil)
			b := e.StartBrowser()
			alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
			base := baseline(e, s)
			e.Step("alice calls the PBX with audio and video", 20*time.Second, func(ctx context.Context) error {
				if err := alice.Eval(ctx, `sip.call("sip:1000@127.0.0.1", {video: true})`, nil); err != nil {
					return err
				}
				return waitCall(ctx, alice, "confirmed")
			})
			e.Step("the PBX's offer and the browser's answer", 5*time.Second, func(ctx context.Context) error {
				inv := invites(pbx)
				if len(inv) != 1 {
					return fmt.Errorf("PBX got %d INVITEs", len(inv))
				}
				if n := strings.Count(inv[0], "\nm="); n != tc.lines {
					return fmt.Errorf("offer to the PBX has %d m-lines, want %d:\n%s", n, tc.lines, inv[0])
				}
				var sdp string
				if err := alice.Eval(ctx, `sip.remoteSDP()`, &sdp); err != nil {
					return err
				}
				if strings.Count(sdp, "\nm=") != 2 || !strings.Contains(sdp, "m=video 0 ") {
					return fmt.Errorf("the browser's answer does not reject its video m-line:\n%s", sdp)
				}
				return nil
			})
			audioArrives(e, alice, "the audio-only PBX's echo")
			hangUp(e, alice)
			e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
			idle(e, s, base)
		})
	}
}

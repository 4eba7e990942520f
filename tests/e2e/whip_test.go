package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 14: WHIP (RFC 9725) from Chromium to a SIP extension. A page on
// another origin publishes its microphone with strait.js's whip(): POST
// /whip/1000 (application/sdp, a bearer key) becomes a SIP call to sipp
// (the PBX, RTP echo) in trunk mode; ICE and DTLS connect, the PBX
// receives the page's RTP (packet capture) and the echo comes back;
// DELETE on the Location hangs up and the PBX gets the BYE.
func TestWHIPFromChromiumToSipp(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedSipp)
	c := capture(e)
	token, key, err := apiauth.NewToken("whip-publisher", "alice", []string{apiauth.ScopeCall})
	if err != nil {
		t.Fatal(err)
	}
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_echo.xml", RTPEcho: true})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Token: "operator",
		Args: []string{"--api-key", key}})
	client := filepath.Join(harness.RepoRoot(), "clients", "js", "strait.js")
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/strait.js" {
			w.Header().Set("Content-Type", "text/javascript")
			http.ServeFile(w, r, client)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, clientPage)
	}))
	t.Cleanup(pages.Close)
	var p *harness.Page
	e.Step("open a page that imports strait.js", 20*time.Second, func(ctx context.Context) (err error) {
		if p, err = e.StartBrowser().Open(ctx, "whip", pages.URL+"/"); err != nil {
			return err
		}
		return p.WaitFor(ctx, `window.loaded === true`)
	})
	base := baseline(e, s)
	e.Step("the page publishes its microphone by WHIP to extension 1000", 20*time.Second, func(ctx context.Context) error {
		var loc string
		err := p.Eval(ctx, fmt.Sprintf(`(async () => {
			const s = new Strait({base: %q, token: %q});
			const mic = await navigator.mediaDevices.getUserMedia({audio: true});
			const pc = window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
			pc.addTransceiver(mic.getAudioTracks()[0], {direction: "sendrecv", streams: [mic]});
			await pc.setLocalDescription(await pc.createOffer());
			await new Promise((ok) => { if (pc.iceGatheringState === "complete") ok();
				pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok(); });
			const {answer, location} = await s.whip("1000", pc.localDescription.sdp);
			await pc.setRemoteDescription({type: "answer", sdp: answer});
			window.whip = {s, location};
			return location;
		})()`, s.URL(), token), &loc)
		if err != nil {
			return err
		}
		e.T().Logf("WHIP session %s", loc)
		return p.WaitFor(ctx, `pc.connectionState === "connected"`)
	})
	pbxMedia(e, c, pbx.MediaPort, pbx.MediaPort+7, minPackets)
	e.Step("the PBX's echo comes back to the page", 15*time.Second, func(ctx context.Context) error {
		return p.WaitFor(ctx, `pc.getStats().then((r) => { let n = 0;
			r.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") n = s.packetsReceived; });
			return n >= 25; })`)
	})
	e.Step("DELETE on the Location hangs up", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `whip.s.whipStop(whip.location).then(() => { pc.close(); return true; })`, nil); err != nil {
			return err
		}
		return p.NoExceptions()
	})
	e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}

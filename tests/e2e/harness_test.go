package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/webphone"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// The tests in this file check the harness and the pages against stubs,
// without strait: sipp against sipp, JsSIP against a SIP-over-WebSocket
// stub, the web phone against a stub of the call API. When a scenario
// fails, these say whether the harness itself still works.

// TestHarnessSipp runs the sipp scenarios against each other: a UAC
// streaming a tone to uas_echo, which echoes it, checked by packet capture;
// and hold and resume re-INVITEs against uas_echo.
func TestHarnessSipp(t *testing.T) {
	e := harness.New(t, harness.NeedSipp)
	capture, err := e.StartCapture()
	if err != nil {
		if harness.CI() {
			t.Fatalf("%v: CI must check the media", err)
		}
		t.Logf("%v: media checked by sipp's exit status only", err)
	}
	uas := e.StartSipp(harness.SippConfig{Scenario: "uas_echo.xml", RTPEcho: true, Calls: 2})
	uac := e.StartSipp(harness.SippConfig{Scenario: "uac_rtpstream.xml", Remote: uas.Addr(), Service: "echo", Pause: 2 * time.Second})
	e.Step("streaming call to uas_echo completes", 20*time.Second, uac.Wait)
	if capture != nil {
		e.Step("tone reached the UAS and its echo came back", time.Second, func(context.Context) error {
			toUAS := capture.Port(uas.MediaPort)
			back := capture.Ports(uac.MediaPort, uac.MediaPort+7)
			t.Logf("to uas_echo: %d packets (payload types %v); echoed back: %d", toUAS.Packets, toUAS.RTP, back.Packets)
			if toUAS.RTP[8] < 80 || back.RTP[8] < 80 {
				return fmt.Errorf("want 80+ PCMA packets each way in 2 s, got %d and %d", toUAS.RTP[8], back.RTP[8])
			}
			return nil
		})
	}
	hold := e.StartSipp(harness.SippConfig{Scenario: "uac_reinvite.xml", Remote: uas.Addr(), Service: "echo"})
	e.Step("hold and resume re-INVITEs answered recvonly then sendrecv", 20*time.Second, hold.Wait)
	e.Step("uas_echo saw both calls through", 10*time.Second, uas.Wait)
	e.Step("sipp's message trace shows the re-INVITEs", time.Second, func(context.Context) error {
		inv := invites(uas)
		if len(inv) != 4 || !strings.Contains(inv[2], "a=sendonly") {
			return fmt.Errorf("uas_echo received %d INVITEs, want 4 with the third on hold", len(inv))
		}
		return nil
	})
}

// TestHarnessJsSIP runs the JsSIP test page in Chromium against the
// SIP-over-WebSocket stub: register, call, media both ways, hold and
// resume, DTMF in band and by INFO, hang up.
func TestHarnessJsSIP(t *testing.T) {
	e := harness.New(t, harness.NeedChromium, harness.NeedJsSIP)
	stub := newSIPStub()
	t.Cleanup(stub.closeAll)
	pages := e.StartPageServer(stub.handler())
	ws := "ws" + strings.TrimPrefix(pages.URL, "http") + "/ws"
	b := e.StartBrowser()
	var p *harness.Page
	e.Step("open the JsSIP page", 20*time.Second, func(ctx context.Context) (err error) {
		p, err = b.Open(ctx, "alice", pages.JsSIPURL())
		return err
	})
	e.Step("register", 10*time.Second, func(ctx context.Context) error {
		return p.Eval(ctx, fmt.Sprintf(`sip.start({ws: %q, uri: "sip:alice@127.0.0.1", password: "secret"}).then(() => true)`, ws), nil)
	})
	e.Step("call echo", 15*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.call("sip:echo@127.0.0.1")`, nil); err != nil {
			return err
		}
		return p.WaitFor(ctx, `sip.state.call === "confirmed"`)
	})
	e.Step("echoed audio arrives", 15*time.Second, func(ctx context.Context) error {
		st, err := waitAudio(ctx, p, jssipStats)
		t.Logf("browser: %s", st)
		return err
	})
	e.Step("hold and resume", 15*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.hold()`, nil); err != nil {
			return err
		}
		return p.Eval(ctx, `sip.unhold()`, nil)
	})
	e.Step("DTMF in band and by INFO", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.dtmf("1#"); sip.dtmf("5", "INFO")`, nil); err != nil {
			return err
		}
		for {
			var callID string
			stub.mu.Lock()
			infos := strings.Join(stub.infos, "\n")
			for id := range stub.peers {
				callID = id
			}
			stub.mu.Unlock()
			var events int
			if peer := stub.peer(callID); peer != nil {
				events = peer.payloadTypes()[126] // Chromium's telephone-event/8000
			}
			if strings.Contains(infos, "Signal=5") && events > 0 {
				t.Logf("echo peer got %d telephone-event packets; INFO bodies: %q", events, infos)
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("INFO bodies %q, %d telephone-event packets: %w", infos, events, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	e.Step("hang up", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.hangup()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `sip.state.call === "ended"`); err != nil {
			return err
		}
		if n := stub.count("BYE"); n != 1 {
			return fmt.Errorf("stub got %d BYEs", n)
		}
		return p.NoExceptions()
	})
}

// TestHarnessWebPhone runs the built-in web phone in Chromium against a
// stub of the call API: dial, media and level meter, DTMF, mute, hang up
// from either side, a refused call; no uncaught exception throughout.
// (TestWebPhone takes the README's screenshot against the real strait.)
func TestHarnessWebPhone(t *testing.T) {
	e := harness.New(t, harness.NeedChromium)
	api := newAPIStub()
	t.Cleanup(api.closeAll)
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.handler())
	mux.Handle("/", webphone.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := e.StartBrowser()
	var p *harness.Page
	e.Step("open the web phone", 20*time.Second, func(ctx context.Context) (err error) {
		p, err = b.Open(ctx, "webphone", srv.URL+"/")
		if err != nil {
			return err
		}
		if err := p.SetViewport(ctx, 420, 760, 2); err != nil {
			return err
		}
		return p.WaitFor(ctx, `window.phone && phone.state === "idle"`)
	})
	dialAndConnect(e, p, "echo")
	e.Step("DTMF through the API", 5*time.Second, func(ctx context.Context) error {
		var via string
		if err := p.Eval(ctx, `phone.dtmf("1").then(() => phone.dtmf("#"))`, &via); err != nil {
			return err
		}
		// The keypad sends too.
		if err := p.Eval(ctx, `document.querySelector('[data-digit="9"]').click()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `phone.events.filter(e => e.type === "dtmf").length === 3`); err != nil {
			return err
		}
		if got := api.digits(); got != "1#9" {
			return fmt.Errorf("API got DTMF %q, want 1#9", got)
		}
		return nil
	})
	e.Step("mute and unmute", 5*time.Second, func(ctx context.Context) error {
		var pressed string
		if err := p.Eval(ctx, `document.getElementById("mute").click(); document.getElementById("mute").getAttribute("aria-pressed")`, &pressed); err != nil {
			return err
		}
		if pressed != "true" {
			return fmt.Errorf("mute button aria-pressed=%q after a click", pressed)
		}
		return p.Eval(ctx, `phone.setMuted(false)`, nil)
	})
	e.Step("far end hangs up", 10*time.Second, func(ctx context.Context) error {
		var id string
		if err := p.Eval(ctx, `phone.callId`, &id); err != nil {
			return err
		}
		if !api.hangupRemote(id) {
			return fmt.Errorf("stub has no call %q", id)
		}
		return p.WaitFor(ctx, `phone.state === "ended" && phone.reason === "remote hung up"`)
	})
	dialAndConnect(e, p, "sip:bob@example.com")
	e.Step("hang up from the page", 10*time.Second, func(ctx context.Context) error {
		before := len(api.requests())
		if err := p.Eval(ctx, `document.getElementById("hangup").click()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `phone.state === "ended"`); err != nil {
			return err
		}
		// The page may fetch more (its call log) once the call ends: the
		// DELETE need not be the last request, only one made since the click.
		for range 50 {
			for _, r := range api.requests()[before:] {
				if strings.HasPrefix(r, "DELETE /v1/calls/") {
					return nil
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("no DELETE after hang up; requests: %v", api.requests())
	})
	e.Step("refused call shows why", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `phone.dial("busy")`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `phone.state === "failed" && phone.reason.startsWith("486")`); err != nil {
			return err
		}
		var text string
		p.Eval(ctx, `document.getElementById("state").textContent`, &text)
		t.Logf("status line: %q", text)
		return p.NoExceptions()
	})
}

// dialAndConnect dials to from the web phone and waits for media and a
// non-zero level meter.
func dialAndConnect(e *harness.Env, p *harness.Page, to string) {
	e.T().Helper()
	e.Step("web phone dials "+to, 15*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, fmt.Sprintf(`document.getElementById("to").value = %q; document.getElementById("call").click()`, to), nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `phone.state === "connected" || phone.state === "failed"`); err != nil {
			return err
		}
		var st struct{ State, Reason string }
		p.Eval(ctx, `({state: phone.state, reason: phone.reason})`, &st)
		if st.State != "connected" {
			return fmt.Errorf("web phone %s: %s", st.State, st.Reason)
		}
		return nil
	})
	e.Step("web phone receives audio and shows a level", 15*time.Second, func(ctx context.Context) error {
		st, err := waitAudio(ctx, p, `Object.assign({level: phone.level}, phone.stats)`)
		e.T().Logf("web phone: %s", st)
		if err != nil {
			return err
		}
		if err := p.WaitFor(ctx, fmt.Sprintf(`phone.level > %g && +document.getElementById("meter").getAttribute("aria-valuenow") > 0`, minLevel)); err != nil {
			return fmt.Errorf("level meter stays at zero: %w", err)
		}
		return nil
	})
}

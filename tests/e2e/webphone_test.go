package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Scenario 5: the built-in web page, served by strait at /, dials echo in
// standalone mode (where the API wants a token: the page asks for it) and
// sipp in trunk mode, and shows a non-zero level; signed in, it registers
// through strait to the PBX and receives a call from sipp: it rings (the
// ring tone is heard), is answered from its Answer button, audio flows
// both ways, it hangs up; the next call is declined from its Decline
// button and the PBX gets 603.
func TestWebPhone(t *testing.T) {
	t.Run("standalone echo", func(t *testing.T) {
		e := harness.New(t, harness.NeedStrait, harness.NeedChromium)
		// The page gets alice's key (calls and her own history); the
		// harness uses the operator's token.
		alice, key, err := apiauth.NewToken("alice-phone", "alice", []string{apiauth.ScopeCall, apiauth.ScopeUser})
		if err != nil {
			t.Fatal(err)
		}
		s := e.StartStrait(harness.StraitConfig{Token: "webphone-token", Args: []string{"--api-key", key}})
		p := openWebPhone(e, s)
		base := baseline(e, s)
		e.Step("the API refuses the page: it asks for a token, which is typed in", 20*time.Second, func(ctx context.Context) error {
			if err := p.Eval(ctx, `phone.dial("echo")`, nil); err != nil {
				return err
			}
			if err := p.WaitFor(ctx, `phone.state === "failed" && !document.getElementById("auth").hidden`); err != nil {
				return err
			}
			return p.Eval(ctx, `document.getElementById("token").value = "`+alice+`";
				document.getElementById("auth").requestSubmit()`, nil)
		})
		dialAndConnect(e, p, "echo")
		e.Step("the page shows call quality (RTT, loss, jitter) and lists the microphones", 15*time.Second, func(ctx context.Context) error {
			if err := p.WaitFor(ctx, `phone.stats.rttMs >= 0 && phone.stats.jitterMs >= 0 && phone.stats.lossPct >= 0 &&
				/RTT \d+ ms · loss \d+\.\d% · jitter \d+ ms/.test(document.getElementById("quality").textContent)`); err != nil {
				return err
			}
			var mics int
			if err := p.Eval(ctx, `phone.microphones().then((m) => m.length)`, &mics); err != nil || mics < 1 {
				return fmt.Errorf("microphones: %d %v", mics, err)
			}
			return nil
		})
		if harness.UpdateScreenshot() {
			screenshot(e, p, "webphone.png")
		}
		webPhoneHangsUp(e, p)
		e.Step("the call log shows alice's call to echo", 15*time.Second, func(ctx context.Context) error {
			return p.WaitFor(ctx, `!document.getElementById("log").hidden &&
				[...document.querySelectorAll("#calls li[data-call]")].some((li) => li.textContent.includes("alice → echo"))`)
		})
		idle(e, s, base)
	})
	t.Run("receives a call from sipp", func(t *testing.T) {
		e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedSipp)
		c := capture(e)
		registrar := e.StartSipp(harness.SippConfig{Name: "pbx-registrar", Scenario: "uas_register.xml"})
		callerPort := harness.FreePort(t)
		s := e.StartStrait(harness.StraitConfig{Upstream: upstream(registrar.Addr()),
			Args: []string{"--upstream", upstream(fmt.Sprintf("127.0.0.1:%d", callerPort)) + ";priority=2"}})
		p := openWebPhone(e, s)
		e.Step("the web phone signs in as alice and registers through strait", 15*time.Second, func(ctx context.Context) error {
			if err := p.Eval(ctx, `document.getElementById("sip-user").value = "alice";
				document.getElementById("sip-password").value = "secret";
				document.getElementById("register").requestSubmit()`, nil); err != nil {
				return err
			}
			if err := p.WaitFor(ctx, `phone.registration === "registered" &&
				document.getElementById("reg-state").textContent.includes("Receiving calls as sip:alice@")`); err != nil {
				return err
			}
			return p.NoExceptions()
		})
		base := baseline(e, s)
		caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_trunk.xml", Remote: s.SIPAddr, Service: "alice", Port: callerPort})
		webPhoneRings(e, p)
		if harness.UpdateScreenshot() {
			screenshot(e, p, "webphone-incoming.png")
		}
		e.Step("the page answers", 15*time.Second, func(ctx context.Context) error {
			if err := p.Eval(ctx, `document.getElementById("answer").click()`, nil); err != nil {
				return err
			}
			if err := p.WaitFor(ctx, `phone.state === "connected" || phone.state === "failed" || phone.state === "ended"`); err != nil {
				return err
			}
			var st struct{ State, Reason string }
			p.Eval(ctx, `({state: phone.state, reason: phone.reason})`, &st)
			if st.State != "connected" {
				return fmt.Errorf("web phone %s: %s", st.State, st.Reason)
			}
			return nil
		})
		e.Step("the web phone hears the PBX's tone", 15*time.Second, func(ctx context.Context) error {
			st, err := waitAudio(ctx, p, `Object.assign({level: phone.level}, phone.stats)`)
			e.T().Logf("web phone: %s", st)
			return err
		})
		pbxMedia(e, c, caller.MediaPort, caller.MediaPort+7, minPackets)
		webPhoneHangsUp(e, p)
		e.Step("the PBX got the BYE", 10*time.Second, caller.Wait)
		idle(e, s, base)

		// The next call is declined from the page's Decline button: the
		// PBX gets 603 Decline (its scenario fails on anything else).
		declined := e.StartSipp(harness.SippConfig{Name: "pbx-declined", Scenario: "uac_declined.xml", Remote: s.SIPAddr, Service: "alice", Port: callerPort})
		webPhoneRings(e, p)
		e.Step("the page declines: the ring stops, the PBX gets 603", 15*time.Second, func(ctx context.Context) error {
			if err := p.Eval(ctx, `document.getElementById("decline").click()`, nil); err != nil {
				return err
			}
			if err := p.WaitFor(ctx, `phone.state === "ended" && phone.reason === "declined" && !phone.ringing &&
				phone.ringLevel() === 0 && document.getElementById("incoming").hidden`); err != nil {
				return err
			}
			if err := declined.Wait(ctx); err != nil {
				return fmt.Errorf("the PBX's declined call: %w", err)
			}
			return p.NoExceptions()
		})
		idle(e, s, base)
	})
	t.Run("trunk to sipp", func(t *testing.T) {
		e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedSipp)
		c := capture(e, pbxEventPT)
		pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_echo.xml", RTPEcho: true})
		s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr())})
		p := openWebPhone(e, s)
		base := baseline(e, s)
		dialAndConnect(e, p, "1000")
		pbxMedia(e, c, pbx.MediaPort, pbx.MediaPort, minPackets)
		e.Step("keypad DTMF reaches the PBX as telephone-event", 10*time.Second, func(ctx context.Context) error {
			if err := p.Eval(ctx, `phone.dtmf("7")`, nil); err != nil {
				return err
			}
			if c == nil {
				return nil
			}
			for harness.DTMFDigits(c.Port(pbx.MediaPort).Events) != "7" {
				select {
				case <-ctx.Done():
					got := c.Port(pbx.MediaPort)
					return fmt.Errorf("PBX got events %q (payload types %v), want 7 at payload type %d", harness.DTMFDigits(got.Events), got.RTP, pbxEventPT)
				case <-time.After(200 * time.Millisecond):
				}
			}
			return nil
		})
		webPhoneHangsUp(e, p)
		e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
		idle(e, s, base)
	})
}

// openWebPhone opens strait's own page at /.
func openWebPhone(e *harness.Env, s *harness.Strait) *harness.Page {
	e.T().Helper()
	var p *harness.Page
	e.Step("open the web phone served by strait", 20*time.Second, func(ctx context.Context) (err error) {
		p, err = e.StartBrowser().Open(ctx, "webphone", s.URL()+"/")
		if err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `window.phone && phone.state === "idle"`); err != nil {
			return err
		}
		return p.NoExceptions()
	})
	return p
}

// webPhoneRings waits for an incoming call to ring: the call and its
// caller shown with Answer and Decline, and the ring tone heard (its
// level, read by an analyser on what the page gives the speaker, rises
// above silence within one ring period).
func webPhoneRings(e *harness.Env, p *harness.Page) {
	e.T().Helper()
	e.Step("the web phone rings: the incoming call, its caller, Answer and Decline, the ring tone", 15*time.Second, func(ctx context.Context) error {
		if err := p.WaitFor(ctx, `phone.state === "incoming" && phone.ringing &&
			!document.getElementById("incoming").hidden &&
			document.getElementById("incoming-from").textContent.includes("sipp") &&
			document.title.startsWith("Incoming call")`); err != nil {
			return err
		}
		return p.WaitFor(ctx, `phone.ringLevel() > 0.01`)
	})
}

func webPhoneHangsUp(e *harness.Env, p *harness.Page) {
	e.T().Helper()
	e.Step("web phone hangs up", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `phone.hangup()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `phone.state === "ended"`); err != nil {
			return err
		}
		return p.NoExceptions()
	})
}

// screenshot writes docs/NAME: the web phone as it is, for the README
// (STRAIT_UPDATE_SCREENSHOT=1).
func screenshot(e *harness.Env, p *harness.Page, name string) {
	e.T().Helper()
	e.Step("screenshot to docs/"+name, 15*time.Second, func(ctx context.Context) error {
		if err := p.SetViewport(ctx, 420, 760, 2); err != nil {
			return err
		}
		if err := p.Eval(ctx, `document.activeElement.blur()`, nil); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond) // a running timer and a settled meter
		png, err := p.Screenshot(ctx)
		if err != nil {
			return err
		}
		path := filepath.Join(harness.RepoRoot(), "docs", name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		e.T().Logf("wrote %s (%d bytes)", path, len(png))
		return os.WriteFile(path, png, 0o644)
	})
}

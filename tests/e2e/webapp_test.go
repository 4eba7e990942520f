package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/examples/webapp/server"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 14, calls to web apps: the example app (examples/webapp) answers a
// call from the PBX in a browser page. Strait (trunk mode) routes 8XXX to
// the app; its backend takes the signed webhook (202) and mints the page a
// token of scope receive:demo; the page, on another origin than Strait's,
// rings on Strait's event stream, shows the caller, answers with its own
// RTCPeerConnection through strait.js: it hears the PBX's tone and the PBX
// gets its RTP (capture); it hangs up and the PBX gets the BYE. The next
// call is declined with 486 chosen in the page, which the PBX gets; the
// last one the caller cancels while the page rings: the ringing stops.
func TestWebAppAnswersCalls(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedSipp)
	c := capture(e)
	appSecret, jwtSecret := secretFile(e, "app.secret", 32), secretFile(e, "jwt.secret", 48)
	ln, err := net.Listen("tcp", harness.LoopbackIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	appURL := "http://" + ln.Addr().String()
	callerPort := harness.FreePort(t)
	s := e.StartStrait(harness.StraitConfig{Token: "operator", Upstream: upstream(fmt.Sprintf("%s:%d", harness.LoopbackIP, callerPort)),
		Args: []string{"--jwt-secret-file", jwtSecret, "--app", "demo:_8XXX:" + appSecret + ":" + appURL + "/calls", "--app-allow-private"}})
	startWebApp(e, ln, appSecret, s)
	var p *harness.Page
	// Chromium's start on a loaded 2-core machine took 18 s once: the
	// page's own steps are timed separately.
	e.Step("open the app's page", 30*time.Second, func(ctx context.Context) (err error) {
		if p, err = e.StartBrowser().Open(ctx, "webapp", appURL+"/"); err != nil {
			return err
		}
		return p.WaitFor(ctx, `window.app !== undefined`)
	})
	e.Step("the page gets a minted token and follows strait's events", 20*time.Second, func(ctx context.Context) error {
		if err := p.WaitFor(ctx, `app.state === "waiting" && app.listening`); err != nil {
			return err
		}
		return p.NoExceptions()
	})
	base := baseline(e, s)
	caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_trunk.xml", Remote: s.SIPAddr, Service: "8001", Port: callerPort})
	webAppRings(e, p)
	// The first getUserMedia starts Chromium's audio service, which took
	// 13 s once on the loaded machine (the page's console has the times).
	e.Step("the page answers from its button", 30*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `document.getElementById("answer").click()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `["connected", "failed", "ended"].includes(app.state)`); err != nil {
			return err
		}
		var st struct{ State, Reason string }
		p.Eval(ctx, `({state: app.state, reason: app.reason})`, &st)
		if st.State != "connected" {
			return fmt.Errorf("page %s: %s", st.State, st.Reason)
		}
		return nil
	})
	e.Step("the page hears the PBX's tone", 15*time.Second, func(ctx context.Context) error {
		st, err := waitAudio(ctx, p, `Object.assign({level: app.level}, app.stats)`)
		e.T().Logf("page: %s", st)
		return err
	})
	pbxMedia(e, c, caller.MediaPort, caller.MediaPort+7, minPackets)
	e.Step("the page hangs up; the PBX gets the BYE", 15*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `document.getElementById("hangup").click()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `app.state === "ended" && app.reason === "hung up"`); err != nil {
			return err
		}
		return caller.Wait(ctx)
	})
	idle(e, s, base)

	busy := e.StartSipp(harness.SippConfig{Name: "pbx-busy", Scenario: "uac_busy_here.xml", Remote: s.SIPAddr, Service: "8002", Port: callerPort})
	webAppRings(e, p)
	e.Step("the page declines with 486 chosen: the PBX gets 486", 15*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `document.getElementById("status").value = "486";
			document.getElementById("decline").click()`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `app.state === "ended" && app.reason === "declined (486)" && document.getElementById("incoming").hidden`); err != nil {
			return err
		}
		if err := busy.Wait(ctx); err != nil {
			return fmt.Errorf("the PBX's refused call: %w", err)
		}
		return p.NoExceptions()
	})
	idle(e, s, base)

	cancelled := e.StartSipp(harness.SippConfig{Name: "pbx-cancel", Scenario: "uac_cancel.xml", Remote: s.SIPAddr, Service: "8003", Port: callerPort})
	e.Step("the caller gives up while the page rings: the ring stops, the CANCEL is answered", 15*time.Second, func(ctx context.Context) error {
		if err := p.WaitFor(ctx, `app.state === "ended" && app.reason === "caller gave up" && document.getElementById("incoming").hidden &&
			app.events.filter((e) => e.type === "state" && e.detail === "incoming").length === 3`); err != nil {
			return err
		}
		if err := cancelled.Wait(ctx); err != nil {
			return fmt.Errorf("the PBX's cancelled call: %w", err)
		}
		return p.NoExceptions()
	})
	idle(e, s, base)
}

// webAppRings waits for the app's page to ring: the incoming panel with
// the caller (sipp's From) and its Answer and Decline buttons.
func webAppRings(e *harness.Env, p *harness.Page) {
	e.T().Helper()
	e.Step("the page rings: the incoming call and its caller", 15*time.Second, func(ctx context.Context) error {
		return p.WaitFor(ctx, `app.state === "incoming" && !document.getElementById("incoming").hidden &&
			document.getElementById("caller").textContent === "sipp" && document.title.startsWith("Incoming call")`)
	})
}

// startWebApp serves the example app's backend on ln: webhooks from s
// signed with the secret in appSecret, pages given tokens minted with
// s's operator token. Its log is the artifact webapp.log.
func startWebApp(e *harness.Env, ln net.Listener, appSecret string, s *harness.Strait) {
	e.T().Helper()
	secret, err := os.ReadFile(appSecret)
	if err != nil {
		e.T().Fatal(err)
	}
	logf, err := os.Create(e.Artifact("webapp.log"))
	if err != nil {
		e.T().Fatal(err)
	}
	app, err := server.New(server.Options{App: "demo", Secret: secret, Strait: s.URL(), Token: s.Token, Mint: true,
		TokenTTL: 10 * time.Minute, Log: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		e.T().Fatal(err)
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e.T().Cleanup(func() {
		srv.Close()
		logf.Close()
	})
}

// secretFile writes n random bytes, base64, to the artifact name.
func secretFile(e *harness.Env, name string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	path := e.Artifact(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.T().Fatal(err)
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)), 0o600); err != nil {
		e.T().Fatal(err)
	}
	return path
}

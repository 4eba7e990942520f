package e2e

import (
	"context"
	"fmt"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// jssipUser describes a JsSIP user agent on the test page.
type jssipUser struct {
	name, password string
	register       bool
	autoAnswer     bool
}

// openJsSIP opens the JsSIP page in a new tab and starts a user agent on
// strait's WebSocket: registered (digest auth against strait's --user) or
// only connected.
func openJsSIP(e *harness.Env, b *harness.Browser, pages *harness.PageServer, ws string, u jssipUser) *harness.Page {
	e.T().Helper()
	var p *harness.Page
	what := "connects"
	if u.register {
		what = "registers"
	}
	// Opening the page is Chromium's work (a tab, the page, the JsSIP
	// bundle), which a loaded machine slows down by tens of seconds; it
	// gets a step and a budget of its own, so that the registration step
	// measures strait and JsSIP only.
	e.Step(fmt.Sprintf("JsSIP page for %s opens", u.name), 60*time.Second, func(ctx context.Context) (err error) {
		p, err = b.Open(ctx, u.name, pages.JsSIPURL())
		return err
	})
	e.Step(fmt.Sprintf("JsSIP %s %s", u.name, what), 20*time.Second, func(ctx context.Context) error {
		return p.Eval(ctx, fmt.Sprintf(`sip.start({ws: %q, uri: "sip:%s@127.0.0.1", password: %q, register: %t, autoAnswer: %t}).then(() => true)`,
			ws, u.name, u.password, u.register, u.autoAnswer), nil)
	})
	return p
}

// callConfirmed places a call from p and waits until it is confirmed.
func callConfirmed(e *harness.Env, p *harness.Page, target string) {
	e.T().Helper()
	e.Step(fmt.Sprintf("%s calls %s", p.Name, target), 20*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, fmt.Sprintf(`sip.call(%q)`, target), nil); err != nil {
			return err
		}
		return waitCall(ctx, p, "confirmed")
	})
}

// waitCall waits until the page's call reaches state, failing early (with
// the cause) if the call fails or ends instead.
func waitCall(ctx context.Context, p *harness.Page, state string) error {
	err := p.WaitFor(ctx, fmt.Sprintf(`sip.state.call === %q || ["failed", "ended"].includes(sip.state.call)`, state))
	var st struct {
		Call, Cause string
		Code        int
	}
	p.Eval(ctx, `sip.state`, &st)
	if err != nil {
		return fmt.Errorf("%s: call %s (%s %d), want %s: %w", p.Name, st.Call, st.Cause, st.Code, state, err)
	}
	if st.Call != state {
		return fmt.Errorf("%s: call %s (cause %q, code %d), want %s", p.Name, st.Call, st.Cause, st.Code, state)
	}
	return nil
}

// hangUp ends the page's call and waits until JsSIP reports it ended.
func hangUp(e *harness.Env, p *harness.Page) {
	e.T().Helper()
	e.Step(p.Name+" hangs up", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.hangup()`, nil); err != nil {
			return err
		}
		return waitCall(ctx, p, "ended")
	})
}

// audioArrives waits for the tone (or its echo) at the page.
func audioArrives(e *harness.Env, p *harness.Page, what string) {
	e.T().Helper()
	e.Step(fmt.Sprintf("%s hears %s", p.Name, what), 15*time.Second, func(ctx context.Context) error {
		st, err := waitAudio(ctx, p, jssipStats)
		e.T().Logf("%s: %s", p.Name, st)
		return err
	})
}

package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/cdp"
)

// chromiumFlags are the flags every test browser runs with.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu",
	// A fake microphone and camera, and "allow" for every permission
	// prompt. Media permission is also what makes Chromium gather real
	// host candidates instead of mDNS .local names.
	"--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
	// Without it Chromium gathers no 127.0.0.1 candidate, and everything
	// here is on loopback.
	"--allow-loopback-in-peer-connection",
	"--autoplay-policy=no-user-gesture-required",
	// Nothing but the tests' own traffic, and no throttling of the
	// timers of background tabs (two phones in one browser).
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--no-first-run", "--no-default-browser-check", "--disable-quic",
	"--disable-background-timer-throttling", "--disable-renderer-backgrounding",
	"--disable-backgrounding-occluded-windows",
}

// Browser is a headless Chromium with a fresh profile and a fake
// microphone that plays a ToneHz tone.
type Browser struct {
	*cdp.Browser
	e *Env
}

// StartBrowser launches Chromium for the test, with extra flags; it is
// closed at the end of the test. Its output goes to the artifact
// chromium.log.
func (e *Env) StartBrowser(extra ...string) *Browser {
	e.t.Helper()
	path, err := ChromiumPath()
	if err != nil {
		e.t.Fatal(err)
	}
	profile, err := os.MkdirTemp("", "strait-e2e-chromium-")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.RemoveAll(profile) })
	tone := e.Artifact("tone.wav")
	e.WriteArtifact("tone.wav", toneWAV(10))
	out, err := os.Create(e.Artifact("chromium.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	args := append(append([]string(nil), chromiumFlags...), "--use-file-for-fake-audio-capture="+tone)
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	b, err := cdp.Launch(context.WithoutCancel(ctx), cdp.Options{Path: path, Args: args, UserDataDir: profile, Output: out,
		SysProcAttr: sysProcAttr()})
	if err != nil {
		out.Close()
		e.t.Fatalf("starting chromium: %v", err)
	}
	e.t.Cleanup(func() {
		b.Close()
		out.Close()
	})
	return &Browser{Browser: b, e: e}
}

// Page is a browser tab whose console goes to the artifact <name>.console.log.
type Page struct {
	*cdp.Page
	Name string
	e    *Env
}

// pageState is evaluated into the artifact <name>.state.json when a test
// fails: the JsSIP test page's or the web phone's model.
const pageState = `(window.sip && window.sip.snapshot && window.sip.snapshot()) ||
 (window.phone && {state: phone.state, reason: phone.reason, callId: phone.callId, level: phone.level,
  stats: phone.stats, events: phone.events}) || null`

// Open opens url in a new tab named name (for its artifacts) and waits
// until it has loaded.
func (b *Browser) Open(ctx context.Context, name, url string) (*Page, error) {
	e := b.e
	cp, err := b.NewPage(ctx)
	if err != nil {
		return nil, err
	}
	p := &Page{Page: cp, Name: name, e: e}
	f, err := os.Create(e.Artifact(name + ".console.log"))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	closed := false
	cp.OnLog(func(l cdp.Log) {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			fmt.Fprintln(f, l)
		}
	})
	e.t.Cleanup(func() {
		if e.t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			var state any
			if err := cp.Eval(ctx, pageState, &state); err == nil && state != nil {
				js, _ := json.MarshalIndent(state, "", "  ")
				e.WriteArtifact(name+".state.json", js)
			}
			if png, err := cp.Screenshot(ctx); err == nil {
				e.WriteArtifact(name+".png", png)
			}
			cancel()
		}
		mu.Lock()
		closed = true
		f.Close()
		mu.Unlock()
	})
	if err := cp.Navigate(ctx, url); err != nil {
		return nil, fmt.Errorf("open %s: %w", url, err)
	}
	return p, nil
}

// NoExceptions returns an error listing the page's uncaught exceptions.
func (p *Page) NoExceptions() error {
	if ex := p.Exceptions(); len(ex) > 0 {
		return fmt.Errorf("%s: %d uncaught exception(s), first: %s", p.Name, len(ex), ex[0].Text)
	}
	return nil
}

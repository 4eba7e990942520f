package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// clientPage loads clients/js/strait.js as an ES module, as a web app
// would, from another origin than strait's.
const clientPage = `<!doctype html><meta charset="utf-8"><title>strait.js</title>
<script type="module">
import { Strait, StraitError } from './strait.js';
Object.assign(window, { Strait, StraitError, loaded: true });
</script>`

// Issue 14: the JavaScript client (clients/js/strait.js) in Chromium,
// against the built binary through CORS with alice's scoped key: a call to
// echo with the page's microphone (its events on the stream, audio back,
// hang-up), presence published and followed, the address book, an instant
// message to herself received on the message stream, her call history,
// and a refused token surfacing as a StraitError with status 401.
func TestJSClient(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium)
	token, key, err := apiauth.NewToken("alice-app", "alice", []string{apiauth.ScopeCall, apiauth.ScopeUser})
	if err != nil {
		t.Fatal(err)
	}
	s := e.StartStrait(harness.StraitConfig{Token: "operator", Args: []string{"--api-key", key}})
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
		if p, err = e.StartBrowser().Open(ctx, "jsclient", pages.URL+"/"); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `window.loaded === true`); err != nil {
			return err
		}
		return p.Eval(ctx, fmt.Sprintf(`window.s = new Strait({base: %q, token: %q});
			window.evs = []; window.pres = []; window.msgs = []; window.open = {};
			window.stopEvents = s.events((ev) => evs.push(ev), {onOpen: () => { open.events = true; }});
			window.stopPresence = s.presenceEvents((p) => pres.push(p), {users: ["alice"], onOpen: () => { open.presence = true; }});
			window.stopMessages = s.messages((m) => msgs.push(m), {onOpen: () => { open.messages = true; }});
			true`, s.URL(), token), nil)
	})
	base := baseline(e, s)
	e.Step("the event streams are open", 10*time.Second, func(ctx context.Context) error {
		return p.WaitFor(ctx, `open.events && open.presence && open.messages`)
	})
	var id string
	e.Step("dial echo: the call is answered and its events arrive", 20*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `s.dial("echo").then((c) => { window.c = c; return c.id; })`, &id); err != nil {
			return err
		}
		return p.WaitFor(ctx, `c.pc.connectionState === "connected" && evs.some((e) => e.call === c.id && e.state === "answered")`)
	})
	e.Step("the echo's audio comes back", 15*time.Second, func(ctx context.Context) error {
		return p.WaitFor(ctx, `c.pc.getStats().then((r) => { let n = 0;
			r.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") n = s.packetsReceived; });
			return n >= 25; })`)
	})
	e.Step("calls() lists it; hangup ends it, the stream says so", 10*time.Second, func(ctx context.Context) error {
		var n int
		if err := p.Eval(ctx, `s.calls().then((l) => l.filter((x) => x.id === c.id && x.caller === "alice").length)`, &n); err != nil || n != 1 {
			return fmt.Errorf("calls(): %d %v", n, err)
		}
		if err := p.Eval(ctx, `c.hangup().then(() => true)`, nil); err != nil {
			return err
		}
		return p.WaitFor(ctx, `evs.some((e) => e.call === c.id && e.state === "ended")`)
	})
	e.Step("presence: published, read back, followed, in the address book", 10*time.Second, func(ctx context.Context) error {
		var st string
		if err := p.Eval(ctx, `s.setPresence("busy", "testing the client").then(() => s.presence("alice")).then((p) => p.status + ":" + p.note)`, &st); err != nil || st != "busy:testing the client" {
			return fmt.Errorf("presence: %q %v", st, err)
		}
		if err := p.WaitFor(ctx, `pres.some((p) => p.user === "alice" && p.status === "busy")`); err != nil {
			return err
		}
		return p.WaitFor(ctx, `s.contacts().then((l) => l.some((x) => x.user === "alice" && x.status === "busy"))`)
	})
	e.Step("a message to herself arrives on the message stream", 10*time.Second, func(ctx context.Context) error {
		var msgID string
		if err := p.Eval(ctx, `s.sendMessage("alice", "hello from strait.js").then((r) => r.delivery === "delivered" ? r.id : "")`, &msgID); err != nil || msgID == "" {
			return fmt.Errorf("sendMessage (delivered to her listener): %q %v", msgID, err)
		}
		if err := p.WaitFor(ctx, fmt.Sprintf(`msgs.some((m) => m.id === %q && m.from === "alice" && m.text === "hello from strait.js")`, msgID)); err != nil {
			return err
		}
		// Nothing was kept for later: she was listening.
		return p.WaitFor(ctx, `s.keptMessages().then((r) => Array.isArray(r.messages) && r.messages.length === 0)`)
	})
	e.Step("her history has the call", 15*time.Second, func(ctx context.Context) error {
		return p.WaitFor(ctx, fmt.Sprintf(`s.history({limit: 5}).then((h) => h.calls.some((x) => x.id === %q))`, id))
	})
	e.Step("a wrong token is a StraitError with status 401 and the problem", 10*time.Second, func(ctx context.Context) error {
		var r string
		err := p.Eval(ctx, fmt.Sprintf(`new Strait({base: %q, token: "strait_wrong"}).calls().then(() => "no error",
			(e) => e instanceof StraitError ? e.status + " " + e.problem.status : "not a StraitError: " + e)`, s.URL()), &r)
		if err != nil || r != "401 401" {
			return fmt.Errorf("wrong token: %q %v", r, err)
		}
		return nil
	})
	e.Step("the streams stop", 5*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `stopEvents(); stopPresence(); stopMessages(); true`, nil); err != nil {
			return err
		}
		return p.NoExceptions()
	})
	idle(e, s, base)
	if strings.HasPrefix(pages.URL, s.URL()) {
		t.Fatalf("the page %s is on strait's origin", pages.URL)
	}
}

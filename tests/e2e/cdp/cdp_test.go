package cdp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestBrowser(t *testing.T) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (scripts/install-test-deps.sh installs it)")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><title>t</title><p id=p>hello</p>
<script>console.log("loaded", 42); window.later = () => new Promise(r => setTimeout(() => r({a: 1}), 50));
setTimeout(() => { throw new Error("boom") }, 10);</script>`))
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	b, err := Launch(ctx, Options{Path: path, UserDataDir: t.TempDir(), Output: &out,
		Args: []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer b.Close()
	p, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := p.Eval(ctx, `document.getElementById("p").textContent`, &text); err != nil || text != "hello" {
		t.Fatalf("Eval = %q, %v", text, err)
	}
	var v struct{ A int }
	if err := p.Eval(ctx, `later()`, &v); err != nil || v.A != 1 {
		t.Fatalf("Eval(promise) = %+v, %v", v, err)
	}
	if err := p.Eval(ctx, `nope()`, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Eval(undefined function) error = %v", err)
	}
	if err := p.WaitFor(ctx, `window.later`); err != nil {
		t.Fatal(err)
	}
	png, err := p.Screenshot(ctx)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("Screenshot: %d bytes, %v", len(png), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Exceptions()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	logs := p.Logs()
	var all []string
	for _, l := range logs {
		all = append(all, l.String())
	}
	joined := strings.Join(all, "\n")
	if !strings.Contains(joined, "[log] loaded 42") || !strings.Contains(joined, "[exception]") || !strings.Contains(joined, "boom") {
		t.Errorf("logs missing console line or exception:\n%s", joined)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Eval(ctx, `1`, nil); err == nil {
		t.Error("Eval after Close succeeded")
	}
}

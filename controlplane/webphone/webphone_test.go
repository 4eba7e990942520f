package webphone

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	straitjs "github.com/strait-sbc/strait/clients/js"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerServesPageAndAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript", "window.phone = phone"},
		{"/phone.js", "text/javascript", "export class Phone"},
		{"/strait.js", "text/javascript", "export class Strait"},
		{"/style.css", "text/css", ".meter"},
		{"/sip.js", "text/javascript", "export function startRegistration"},
		{"/jssip.min.js", "text/javascript", "JsSIP 3.13.8"},
	} {
		res := get(t, h, http.MethodGet, tc.path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", tc.path, res.Status)
			continue
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		for _, k := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Cache-Control"} {
			if res.Header.Get(k) == "" {
				t.Errorf("GET %s: no %s header", tc.path, k)
			}
		}
	}
}

func TestHandlerRefusesOthers(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/index.html", "/static/app.js", "/webphone.go", "/../go.mod", "/v1/calls"} {
		if res := get(t, h, http.MethodGet, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, res.Status)
		}
	}
	res := get(t, h, http.MethodPost, "/")
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") == "" {
		t.Errorf("POST /: %s, Allow %q", res.Status, res.Header.Get("Allow"))
	}
	if res := get(t, h, http.MethodHead, "/app.js"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /app.js: %s", res.Status)
	}
}

// TestPageReferencesOnlyItsOwnAssets keeps the page self-contained: every
// src and href in index.html is one of the served files (or a data: URL),
// so the binary never depends on a CDN.
func TestPageReferencesOnlyItsOwnAssets(t *testing.T) {
	h := Handler()
	page, _ := io.ReadAll(get(t, h, http.MethodGet, "/").Body)
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(page), -1)
	if len(refs) == 0 {
		t.Fatal("no src or href found in the page")
	}
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") {
			continue
		}
		if strings.Contains(ref, "//") {
			t.Errorf("page refers to another origin: %s", ref)
			continue
		}
		if res := get(t, h, http.MethodGet, "/"+ref); res.StatusCode != http.StatusOK {
			t.Errorf("page refers to %s, which is %s", ref, res.Status)
		}
	}
}

// TestModulesImportOnlyServedFiles keeps the page's ES modules
// self-contained: every import in a served module names a served file,
// and strait.js is clients/js's own (one copy: it cannot drift).
func TestModulesImportOnlyServedFiles(t *testing.T) {
	h := Handler()
	imports := regexp.MustCompile(`(?m)^import .* from '([^']+)';`)
	seen := 0
	for _, mod := range []string{"/app.js", "/phone.js", "/sip.js", "/strait.js"} {
		body, _ := io.ReadAll(get(t, h, http.MethodGet, mod).Body)
		for _, m := range imports.FindAllStringSubmatch(string(body), -1) {
			seen++
			ref := m[1]
			if !strings.HasPrefix(ref, "./") {
				t.Errorf("%s imports %s: not a file beside it", mod, ref)
				continue
			}
			if res := get(t, h, http.MethodGet, "/"+strings.TrimPrefix(ref, "./")); res.StatusCode != http.StatusOK {
				t.Errorf("%s imports %s, which is %s", mod, ref, res.Status)
			}
		}
	}
	if seen < 3 {
		t.Fatalf("found %d imports: app.js imports phone.js, which imports sip.js and strait.js", seen)
	}
	// Every API request goes through strait.js: the page's own modules
	// make none themselves.
	for _, mod := range []string{"/app.js", "/phone.js", "/sip.js"} {
		body, _ := io.ReadAll(get(t, h, http.MethodGet, mod).Body)
		if regexp.MustCompile(`\bfetch\(|XMLHttpRequest|EventSource`).Match(body) {
			t.Errorf("%s makes HTTP requests of its own: use strait.js", mod)
		}
	}
	served, _ := io.ReadAll(get(t, h, http.MethodGet, "/strait.js").Body)
	if string(served) != string(straitjs.Source()) {
		t.Fatal("/strait.js is not clients/js's strait.js")
	}
}

package harness

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// runDir holds files shared by the tests of one run (the JsSIP bundle);
// Main removes it.
var runDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "strait-e2e-run-") })

func removeRunDir() {
	if dir, err := runDir(); err == nil {
		os.RemoveAll(dir)
	}
}

// jssipBundle builds JsSIP from tests/e2e/js/node_modules into one browser
// script, once per run.
var jssipBundle = sync.OnceValues(func() (string, error) {
	dir, err := runDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "jssip.bundle.js")
	cmd := exec.Command("node", "build.mjs", out)
	cmd.Dir = filepath.Join(E2EDir(), "js")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bundling JsSIP (node build.mjs): %v\n%s", err, b)
	}
	return out, nil
})

// PageServer serves the test pages of tests/e2e/pages and the JsSIP
// bundle on 127.0.0.1.
type PageServer struct {
	*httptest.Server
}

// StartPageServer starts the test page server for the test; extra, if not
// nil, serves every path the pages directory does not have (a stub API).
func (e *Env) StartPageServer(extra http.Handler) *PageServer {
	e.t.Helper()
	bundle, err := jssipBundle()
	if err != nil {
		e.t.Fatal(err)
	}
	pages := filepath.Join(E2EDir(), "pages")
	files := http.FileServer(http.Dir(pages))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jssip.bundle.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, bundle)
	})
	for _, name := range []string{"jssip.html", "jssip-client.js"} {
		mux.Handle("GET /"+name, files)
	}
	if extra != nil {
		mux.Handle("/", extra)
	}
	srv := httptest.NewServer(mux)
	e.t.Cleanup(srv.Close)
	return &PageServer{srv}
}

// JsSIPURL returns the URL of the JsSIP test page.
func (s *PageServer) JsSIPURL() string { return s.URL + "/jssip.html" }

// Query builds a query string from name, value pairs.
func Query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

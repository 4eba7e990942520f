// Package js holds strait.js, Strait's JavaScript client (an ES module,
// see README.md), embedded so that Go programs serve the one copy: the web
// phone (controlplane/webphone) and the example app (examples/webapp)
// load it from here, and a page elsewhere copies the file itself.
package js

import (
	"bytes"
	_ "embed" // strait.js
	"net/http"
	"time"
)

//go:embed strait.js
var source []byte

// Name is the file name pages import ("./strait.js").
const Name = "strait.js"

// Source returns a copy of strait.js.
func Source() []byte { return bytes.Clone(source) }

// Handler serves strait.js (GET and HEAD, any path: mount it where pages
// import it) as text/javascript. It sets no caching or security headers
// beyond nosniff: those are the mounting page's policy.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, Name, time.Time{}, bytes.NewReader(source))
	})
}

// Package webphone serves Strait's built-in web phone: one page that places
// calls through Strait's HTTP call API with the browser's own
// RTCPeerConnection, every API request made by Strait's JavaScript client
// (clients/js/strait.js, served at strait.js from that package: one copy),
// and receives calls once signed in: it registers its
// user over SIP over WebSocket (/ws) with JsSIP, bundled as
// static/jssip.min.js (MIT; rebuilt by tests/e2e/js/build.mjs --minify), and
// rings, answers (the microphone chosen) or declines (603). The page dials a number, a user or a SIP URI (in
// standalone mode "echo" plays the caller's own voice back), hangs up,
// mutes, sends DTMF, and shows the call's state and a live level meter of
// the audio it receives.
//
// The page loads nothing from elsewhere: its HTML, JavaScript (plain ES
// modules, no build step: app.js the page, phone.js its model, sip.js the
// registration, strait.js the API client; and the JsSIP bundle) and CSS are
// embedded in the binary. It gathers all its ICE candidates before it sends the offer
// (POST /v1/calls, no trickle), applies the answer from the response, and
// follows the call through the API's server-sent events, or by polling the
// call when no event stream is offered.
//
// For tests the page publishes its model as window.phone: state, callId,
// reason, level (the meter, 0 to 1), stats (inbound and outbound RTP
// packets, received audio energy, refreshed twice a second) and events (a
// log of what happened), registration, and the methods dial, hangup, dtmf,
// setMuted, register, unregister, answer and decline.
package webphone

import (
	"embed"
	"io/fs"
	"net/http"

	straitjs "github.com/strait-sbc/strait/clients/js"
)

//go:embed static
var static embed.FS

// contentSecurityPolicy allows the page to load only its own script and
// style and to talk only to its own origin (the call API). WebRTC media is
// not subject to CSP.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self' data:; media-src 'self'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// Handler returns a handler serving the page at "/" and its assets beside
// it. It resolves every URL relative to the path it is mounted on (the
// page finds the API at "v1/" relative to itself), so mount it at the root
// of the HTTP server that serves /v1, or strip a prefix shared by both.
// Only GET and HEAD are allowed; any other path is 404.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	files := http.FileServerFS(sub)
	client := straitjs.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		serve := files
		switch r.URL.Path {
		case "/", "/app.js", "/phone.js", "/sip.js", "/jssip.min.js", "/style.css":
		case "/" + straitjs.Name:
			serve = client
		default:
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Embedded files carry no modification time; make browsers
		// revalidate so that a new binary's page is picked up.
		h.Set("Cache-Control", "no-cache")
		serve.ServeHTTP(w, r)
	})
}

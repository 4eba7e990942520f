// Package origins holds the web origins allowed to reach Strait from a
// page that Strait did not serve: CORS on the HTTP API (--cors-origin) and
// the Origin check of SIP over WebSocket (/ws), one list for both.
package origins

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/rs/cors"
)

// corsMaxAge is how long a browser may cache a preflight's answer, in
// seconds: Chromium caps it at 7200, and ten minutes keeps a changed
// --cors-origin list from lingering long.
const corsMaxAge = 600

// List is the list of web origins allowed to use the API from a page
// of theirs (CORS) and to open SIP WebSockets (/ws). A page served by
// Strait itself is always allowed (same origin). It is frozen after
// New and safe for concurrent use.
type List struct {
	c   *cors.Cors
	any bool
	n   int
}

// New checks and compiles a list of allowed origins: each is
// "scheme://host[:port]", with at most one "*" standing for any run of
// characters ("https://*.example.com", "http://127.0.0.1:*"), or "*" alone
// for every origin. An empty list allows none but the same origin.
func New(list []string) (*List, error) {
	o := &List{n: len(list)}
	for _, s := range list {
		if err := Check(s); err != nil {
			return nil, err
		}
		if s == "*" {
			o.any = true
		}
	}
	opts := cors.Options{
		AllowedOrigins: list,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		// Content-Type for JSON and SDP bodies, Authorization for the
		// bearer token, If-Match for WHIP's PATCH (RFC 9725 section 4.3.1).
		AllowedHeaders: []string{"Authorization", "Content-Type", "If-Match", "Accept", "Last-Event-ID"},
		// Location names a created call or WHIP session; Link carries
		// WHIP's ICE servers; ETag its ICE session (RFC 9725 section 4.3).
		ExposedHeaders: []string{"Location", "Link", "ETag", "Retry-After", "Accept-Patch", "WWW-Authenticate"},
		MaxAge:         corsMaxAge,
		// Tokens travel in Authorization, not cookies: no credentials
		// mode, which also keeps "*" usable.
		AllowCredentials: false,
	}
	if len(list) == 0 {
		// rs/cors reads an empty list as "*".
		opts.AllowOriginFunc = func(string) bool { return false }
	}
	o.c = cors.New(opts)
	return o, nil
}

// Check reports whether s is a valid --cors-origin value.
func Check(s string) error {
	if s == "*" {
		return nil
	}
	if strings.Count(s, "*") > 1 {
		return fmt.Errorf("cors origin %q: at most one *", s)
	}
	// Parse with the wildcard replaced by what it may stand for: a port
	// after a colon, a label elsewhere.
	u, err := url.Parse(strings.Replace(strings.Replace(s, ":*", ":1", 1), "*", "x", 1))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("cors origin %q: want scheme://host[:port], e.g. https://app.example.com", s)
	}
	return nil
}

// Handler wraps h with CORS: preflights (OPTIONS with
// Access-Control-Request-Method) are answered here, before any
// authentication (a preflight carries no credentials), and responses to
// allowed origins carry the Access-Control-* headers.
func (o *List) Handler(h http.Handler) http.Handler { return o.c.Handler(h) }

// AllowWebSocket reports whether a WebSocket upgrade may proceed: a
// request without Origin (not from a browser page), from the server's own
// origin, or from an allowed one. Browsers always send Origin on a
// WebSocket handshake (RFC 6455 section 4.1 point 8) and the server must
// check it against pages it does not trust (section 10.2): otherwise any
// site the user visits may open SIP flows to Strait in the user's name.
func (o *List) AllowWebSocket(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any || sameOrigin(r, origin) {
		return true
	}
	return o.n > 0 && o.c.OriginAllowed(r)
}

// sameOrigin reports whether origin names the host the request was sent
// to (scheme aside: behind a TLS-terminating proxy the request arrives as
// plain HTTP).
func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

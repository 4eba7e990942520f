// Package server is the backend of the example web app that answers calls
// in a browser page (examples/webapp): it takes Strait's signed webhook
// for each call routed to the app (strait --app NAME:PATTERN:SECRET:URL),
// accepts it with 202 and keeps the call's WebRTC offer for the page; it
// gives the page a token of scope receive:NAME (minted per page through
// Strait's POST /v1/tokens, or one API key held for all); and it serves
// the page, which follows Strait's event stream, fetches the offer of a
// ringing call from here, and answers or declines it through Strait's API
// with clients/js/strait.js.
//
// Routes:
//
//	POST /calls          Strait's webhook (HMAC-signed): 202, or {"reject": 486} when too many calls ring
//	GET  /session        {strait, app, token, expires}: what the page needs to talk to Strait
//	GET  /offers/{call}  {call, caller, callee, offer, expires}, waiting a few seconds for the webhook (503 past 4*MaxRinging waiting)
//	GET  /, /app.js, /style.css, /strait.js   the page
package server

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	straitjs "github.com/strait-sbc/strait/clients/js"
	"github.com/strait-sbc/strait/examples/callapp/app"
)

//go:embed static
var static embed.FS

// Options configure a Server.
type Options struct {
	// App is the app's name in strait --app: the page's token has scope
	// receive:App and webhooks for other apps are refused.
	App string
	// Secret is the webhook secret shared with Strait (the --app file).
	Secret []byte
	// Strait is Strait's base URL as the page's browser reaches it.
	Strait string
	// API is Strait's base URL as this backend reaches it (default
	// Strait); used only with Mint.
	API string
	// Token is the credential the page's token comes from: with Mint an
	// admin credential that mints one per page, else an API key of scope
	// receive:App given to every page as it is.
	Token string
	// Mint makes the backend mint a short-lived token per page (POST
	// /v1/tokens; Strait needs --jwt-secret-file).
	Mint bool
	// TokenTTL is a minted token's lifetime (default 1 hour).
	TokenTTL time.Duration
	// MaxRinging bounds the calls waiting for a page (default 20); more
	// are refused 486 Busy Here.
	MaxRinging int
	// OfferWait is how long GET /offers/{call} waits for the call's
	// webhook (default 5 s).
	OfferWait time.Duration
	// Client makes the requests to Strait (default: 10 s timeout).
	Client *http.Client
	// Log is the logger (nil: slog.Default()).
	Log *slog.Logger
}

// Server is the app's HTTP handler. Create with New; safe for concurrent
// use; its fields are frozen after New (offers has its own lock).
type Server struct {
	o        Options
	verifier *app.Verifier
	offers   *offers
	waiters  chan struct{} // a slot per GET /offers/{call} waiting: bounded
	mux      *http.ServeMux
	csp      string
}

// maxWebhook bounds a webhook's body (an SDP offer is a few KiB).
const maxWebhook = 64 << 10

// New checks o and returns the Server.
func New(o Options) (*Server, error) {
	if o.App == "" || strings.ContainsAny(o.App, ": /") {
		return nil, fmt.Errorf("app name %q: want the NAME of strait --app", o.App)
	}
	if len(o.Secret) < 16 {
		return nil, errors.New("webhook secret: want at least 16 bytes")
	}
	su, err := url.Parse(o.Strait)
	if err != nil || (su.Scheme != "http" && su.Scheme != "https") || su.Host == "" {
		return nil, fmt.Errorf("strait URL %q: want http(s)://host[:port]", o.Strait)
	}
	if o.Token == "" {
		return nil, errors.New("no token: the page needs one (an API key of scope receive:APP, or an admin token with Mint)")
	}
	if o.API == "" {
		o.API = o.Strait
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.MaxRinging <= 0 {
		o.MaxRinging = 20
	}
	if o.OfferWait <= 0 {
		o.OfferWait = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Server{o: o, verifier: &app.Verifier{Secret: o.Secret}, offers: newOffers(o.MaxRinging, 2*time.Minute),
		waiters: make(chan struct{}, 4*o.MaxRinging), mux: http.NewServeMux(),
		// The page talks to its own origin and to Strait's; media is not
		// subject to CSP.
		csp: "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' " + su.Scheme + "://" + su.Host +
			"; img-src 'self' data:; media-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(sub)
	page := func(h http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", s.csp)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Referrer-Policy", "no-referrer")
			w.Header().Set("Cache-Control", "no-cache")
			h.ServeHTTP(w, r)
		}
	}
	s.mux.HandleFunc("POST /calls", s.webhook)
	s.mux.HandleFunc("GET /session", s.session)
	s.mux.HandleFunc("GET /offers/{call}", s.offer)
	for _, f := range []string{"/{$}", "/app.js", "/style.css"} {
		s.mux.Handle("GET "+f, page(files))
	}
	s.mux.Handle("GET /"+straitjs.Name, page(straitjs.Handler()))
	return s, nil
}

// ServeHTTP serves the routes in the package doc.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Ringing returns how many calls wait for a page.
func (s *Server) Ringing() int { return s.offers.len() }

// webhook takes Strait's call.incoming: 401 for a bad signature, 409 for
// a replay, 400 for another app's call or a body that is not a call,
// {"reject": 486} when MaxRinging calls wait already, else 202: the page
// answers through the API.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhook))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	delivery, err := s.verifier.Verify(r, body)
	switch {
	case errors.Is(err, app.ErrReplay):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.o.Log.Warn("webhook refused", "err", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var in app.Incoming
	if err := json.Unmarshal(body, &in); err != nil || in.Type != "call.incoming" || in.Call == "" || in.Offer == "" || in.App != s.o.App {
		s.verifier.Release(delivery)
		http.Error(w, "not a call.incoming webhook for app "+s.o.App, http.StatusBadRequest)
		return
	}
	if !s.offers.put(in, time.Now()) {
		s.o.Log.Warn("too many calls ringing: busy", "call", in.Call, "caller", in.Caller)
		writeJSON(w, http.StatusOK, map[string]int{"reject": 486})
		return
	}
	s.o.Log.Info("call ringing for the page", "call", in.Call, "caller", in.Caller, "callee", in.Callee)
	w.WriteHeader(http.StatusAccepted)
}

// Offer is what GET /offers/{call} returns to the page.
type Offer struct {
	Call    string    `json:"call"`
	Caller  string    `json:"caller"`
	Callee  string    `json:"callee"`
	Offer   string    `json:"offer"`
	Expires time.Time `json:"expires"`
}

// offer returns a ringing call's offer, waiting OfferWait for its
// webhook; 503 when 4*MaxRinging requests wait already.
func (s *Server) offer(w http.ResponseWriter, r *http.Request) {
	select {
	case s.waiters <- struct{}{}:
		defer func() { <-s.waiters }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests waiting for offers", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.OfferWait)
	defer cancel()
	in, ok := s.offers.wait(ctx, r.PathValue("call"))
	if !ok {
		http.Error(w, "no such call ringing for this app", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, Offer{Call: in.Call, Caller: in.Caller, Callee: in.Callee, Offer: in.Offer, Expires: in.Expires})
}

// Session is what GET /session returns to the page.
type Session struct {
	// Strait is Strait's base URL.
	Strait string `json:"strait"`
	// App is the app's name (events name it).
	App string `json:"app"`
	// Token is the page's bearer token for Strait (scope receive:App).
	Token string `json:"token"`
	// Expires is when a minted token stops working (zero for a key).
	Expires time.Time `json:"expires,omitzero"`
}

// session gives the page its token. A real app authenticates its user
// first (its own login, cookie, SSO) and mints only for those allowed to
// take the app's calls; this example trusts whoever reaches it, so it
// listens on loopback by default.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	out := Session{Strait: s.o.Strait, App: s.o.App, Token: s.o.Token}
	if s.o.Mint {
		var err error
		if out.Token, out.Expires, err = s.mint(r.Context()); err != nil {
			s.o.Log.Error("mint a token for the page", "err", err)
			http.Error(w, "no token for the page: "+err.Error(), http.StatusBadGateway)
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// mint asks Strait for a token of scope receive:App (POST /v1/tokens).
func (s *Server) mint(ctx context.Context) (string, time.Time, error) {
	body, _ := json.Marshal(map[string]any{"user": s.o.App, "scopes": []string{"receive:" + s.o.App},
		"ttl_s": int(s.o.TokenTTL / time.Second)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.o.API, "/")+"/v1/tokens", bytes.NewReader(body))
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Authorization", "Bearer "+s.o.Token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.o.Client.Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 16<<10))
	if res.StatusCode != http.StatusCreated {
		return "", time.Time{}, fmt.Errorf("POST /v1/tokens: %s: %s", res.Status, bytes.TrimSpace(data))
	}
	var tok struct {
		Token   string    `json:"token"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(data, &tok); err != nil || tok.Token == "" {
		return "", time.Time{}, fmt.Errorf("POST /v1/tokens: no token in %q", data)
	}
	return tok.Token, tok.Expires, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

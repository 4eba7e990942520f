// Package api is Strait's HTTP API for web apps and operators, under /v1
// (and WHIP, RFC 9725, under /whip):
// place a call from a browser's WebRTC offer (POST /v1/calls), list, get
// and hang up calls, send DTMF, follow call events (server-sent events at
// /v1/events), read call records (/v1/cdrs) and registrations.
//
// The whole API is described by an OpenAPI 3.1 document served at
// /v1/openapi.json (openapi.yaml in this directory); a test drives every
// route and checks each request and response against it. Every error is
// an RFC 9457 problem details object (application/problem+json): 400 for
// a malformed body, 401 without valid credentials, 404 for an unknown
// path or call, 405 with Allow for a method a path does not take, 413 for
// a body past the limit, 415 for a body that is not JSON, 429 with
// Retry-After for a rate limit. Cross-origin pages are served (CORS) only
// from the configured origins.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/registrar"
)

// Config configures the API.
type Config struct {
	// Engine places and holds the calls.
	Engine *b2bua.Engine
	// CDR serves /v1/cdrs; Registry /v1/registrations. Either may be nil.
	CDR      *cdr.Store
	Registry *registrar.Registry
	// History serves /v1/history; nil answers 503.
	History History
	// Presence serves /v1/presence and /v1/contacts; nil answers 503.
	Presence *presence.Book
	// PresenceSIP, in trunk mode, carries presence to and from the
	// upstream (package presence/sipbridge): what users publish goes out,
	// users watched on the event stream (?user=) are subscribed to. Nil:
	// presence stays Strait's own.
	PresenceSIP PresenceSIP
	// Messages carries instant messages to API listeners; nil answers 503.
	Messages *messaging.Hub
	// Mailbox keeps messages for offline users: POST /v1/messages keeps
	// what nobody took (standalone mode; in trunk mode the PBX is the
	// recipient's server), and the user's event stream or GET
	// /v1/messages hands them over. Nil keeps nothing.
	Mailbox *messaging.Mailbox
	// Names are the address book's names of users (--contacts-file),
	// shown in GET /v1/contacts; frozen.
	Names map[string]string
	// MessageLimit bounds each user's POST /v1/messages (nil: no limit);
	// Refused counts requests refused by reason (nil: not counted).
	MessageLimit *messaging.Limiter
	Refused      func(reason string)
	// Directory lists the configured users for the address book (nil:
	// none; the registered and those who published presence are listed
	// anyway).
	Directory func() []string
	// Auth returns the authenticator in force (it changes on reload);
	// nil, or one that returns nil or has no credentials, lets every
	// request act as the operator, which config.Validate allows on
	// loopback only.
	Auth func() *apiauth.Authenticator
	// Peers reaches the calls other control planes hold (several sharing
	// one state store, package cluster): the list shows them, and a call
	// this process does not hold is looked up, hung up and sent DTMF
	// there. Nil: this process holds every call.
	Peers Peers
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// PresenceSIP bridges presence to the upstream (sipbridge.Bridge).
type PresenceSIP interface {
	// Published sends a user's new presence on (without blocking).
	Published(presence.State)
	// Watch subscribes to a user's presence until stop is called.
	Watch(user string) (stop func())
}

// Peers are the other control planes of the service (cluster.Peers).
type Peers interface {
	// Calls returns the calls the others hold.
	Calls(ctx context.Context) ([]b2bua.Info, error)
	// Call returns a call another holds (an error when none does).
	Call(ctx context.Context, id string) (b2bua.Info, error)
	// Hangup hangs a call up where it is held, returning once it ended.
	Hangup(ctx context.Context, id string) error
	// SendDTMF sends digits in a call held elsewhere (b2bua's
	// Call.SendDTMF there; its failure as a *b2bua.Error).
	SendDTMF(ctx context.Context, id, digits string) error
}

// API serves /v1. It is safe for concurrent use; its fields are frozen
// after New.
type API struct {
	cfg    Config
	mux    *http.ServeMux
	routes []Route
}

// Route is one method and path pattern the API serves, in
// http.ServeMux's syntax ("/v1/calls/{id}"), and the scope it needs ("":
// none, served without credentials).
type Route struct {
	Method, Path, Scope string
}

// New returns the API handler.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	call, admin := apiauth.ScopeCall, apiauth.ScopeAdmin
	// Calls are seen, followed and hung up by whoever placed them (call)
	// and by the apps they were routed to (receive[:APP]).
	callOrReceive := apiauth.ScopeCall + " " + apiauth.ScopeReceive
	a.handle("POST", "/v1/calls", call, a.placeCall)
	a.handle("GET", "/v1/calls", callOrReceive, a.listCalls)
	a.handle("GET", "/v1/calls/{id}", callOrReceive, a.getCall)
	a.handle("DELETE", "/v1/calls/{id}", callOrReceive, a.hangup)
	a.handle("POST", "/v1/calls/{id}/dtmf", call, a.dtmf)
	a.handle("POST", "/v1/calls/{id}/answer", apiauth.ScopeReceive, a.answerCall)
	a.handle("GET", "/v1/events", callOrReceive, a.events)
	a.handle("GET", "/v1/calls/{id}/events", callOrReceive, a.events)
	a.handle("GET", "/v1/cdrs", apiauth.ScopeCDR, a.cdrs)
	a.handle("GET", "/v1/registrations", admin, a.registrations)
	a.handle("GET", "/v1/history", apiauth.ScopeUser, a.history)
	a.handle("PUT", "/v1/presence", apiauth.ScopeUser, a.setPresence)
	a.handle("GET", "/v1/events/presence", apiauth.ScopeUser, a.presenceEvents)
	a.handle("GET", "/v1/presence/{user}", apiauth.ScopeUser, a.getPresence)
	a.handle("GET", "/v1/contacts", apiauth.ScopeUser, a.contacts)
	a.handle("POST", "/v1/messages", apiauth.ScopeUser, a.sendMessage)
	a.handle("GET", "/v1/messages", apiauth.ScopeUser, a.keptMessages)
	a.handle("GET", "/v1/events/messages", apiauth.ScopeUser, a.messageEvents)
	a.handle("POST", "/v1/tokens", admin, a.mintToken)
	a.handle("GET", "/v1/openapi.json", "", serveOpenAPI)
	a.handle("POST", "/whip/{callee}", call, a.whipPublish)
	a.handle("DELETE", whipSessions+"{id}", call, a.whipDelete)
	a.methodNotAllowed()
	notFound := func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	}
	a.mux.HandleFunc("/v1/", notFound)
	a.mux.HandleFunc("/whip/", notFound)
	return a
}

// handle serves method and path with h for principals that hold scope,
// or one of its space-separated scopes (RFC 6750 section 3's syntax);
// receive is held by every receive:APP too (the handler checks the app).
func (a *API) handle(method, path, scope string, h http.HandlerFunc) {
	a.routes = append(a.routes, Route{Method: method, Path: path, Scope: scope})
	a.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
		if scope == "" {
			h(w, r)
			return
		}
		p, err := authOf(a.cfg.Auth).Authenticate(r)
		if err != nil {
			challenge(w, r, err)
			return
		}
		if !holds(p, scope) {
			// RFC 6750 section 3.1: insufficient_scope is a 403.
			w.Header().Set("WWW-Authenticate", `Bearer realm="strait", error="insufficient_scope", scope="`+scope+`"`)
			WriteProblem(w, r, http.StatusForbidden, ProblemScope, "this token lacks the "+scope+" scope")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// holds reports whether p holds one of scope's space-separated scopes.
func holds(p apiauth.Principal, scope string) bool {
	for _, s := range strings.Fields(scope) {
		if p.Has(s) || (s == apiauth.ScopeReceive && p.ReceivesAny()) {
			return true
		}
	}
	return false
}

// authOf returns the authenticator f gives, nil when f is nil.
func authOf(f func() *apiauth.Authenticator) *apiauth.Authenticator {
	if f == nil {
		return nil
	}
	return f()
}

// principalKey keys the request's apiauth.Principal in its context.
type principalKey struct{}

// principal returns who sent r (set by handle).
func principal(r *http.Request) apiauth.Principal {
	p, _ := r.Context().Value(principalKey{}).(apiauth.Principal)
	return p
}

// challenge answers a request without valid credentials: 401 with a
// Bearer challenge (RFC 6750 section 3), invalid_token when one was sent.
func challenge(w http.ResponseWriter, r *http.Request, err error) {
	c := `Bearer realm="strait"`
	if !errors.Is(err, apiauth.ErrNoCredentials) {
		c += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", c)
	detail := "missing bearer token"
	if !errors.Is(err, apiauth.ErrNoCredentials) {
		detail = "invalid bearer token"
	}
	WriteProblem(w, r, http.StatusUnauthorized, "", detail)
}

// methodNotAllowed answers, on every path the API serves, the methods it
// does not take: 405 with Allow (RFC 9110 section 15.5.6), or 204 with
// Allow for a plain OPTIONS (CORS preflights are answered before this).
func (a *API) methodNotAllowed() {
	allowed := map[string][]string{}
	var paths []string
	for _, r := range a.routes {
		if _, ok := allowed[r.Path]; !ok {
			paths = append(paths, r.Path)
		}
		allowed[r.Path] = append(allowed[r.Path], r.Method)
		if r.Method == http.MethodGet {
			allowed[r.Path] = append(allowed[r.Path], http.MethodHead)
		}
	}
	for _, p := range paths {
		allow := strings.Join(slices.Compact(allowed[p]), ", ")
		a.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			WriteProblem(w, r, http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+allow)
		})
	}
}

// Routes lists the method and path of every operation the API serves
// (for the test that holds the OpenAPI document to them).
func (a *API) Routes() []Route { return slices.Clone(a.routes) }

// ServeHTTP serves the API. Each operation checks the credentials and
// scope it needs; a request for no operation (404, 405) is answered
// without looking at credentials, as it reveals nothing.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// RequireScope wraps h, for the listener's other handlers (/metrics), with
// the API's authentication: 401 without valid credentials, 403 without
// scope.
func RequireScope(auth func() *apiauth.Authenticator, scope string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := authOf(auth).Authenticate(r)
		if err != nil {
			challenge(w, r, err)
			return
		}
		if !p.Has(scope) {
			WriteProblem(w, r, http.StatusForbidden, ProblemScope, "this token lacks the "+scope+" scope")
			return
		}
		h.ServeHTTP(w, r)
	})
}

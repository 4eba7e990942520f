// Package apps routes calls to web apps. An operator names an app, the
// callee numbers it takes (a dial-plan pattern), the URL of its webhook
// and the file of the secret its webhooks are signed with:
//
//	--app support:_8XXX:/etc/strait/support.secret:https://app.example.com/strait/calls
//
// A call (from the PBX, a SIP phone or a browser) to a matching number
// is not routed to SIP: Strait makes a WebRTC offer for it and POSTs it
// to the app (webhook.go), signed with HMAC-SHA256 over a timestamp and
// the body (signature.go) and retried with backoff on 5xx, 429, 408 and
// timeouts. The app answers in the webhook's response (an SDP answer, or
// a rejection with a SIP status), or accepts it with 202 and answers
// later through the HTTP API (POST /v1/calls/{id}/answer with a token of
// scope receive:NAME). The call is then bridged through the dataplane
// like any other.
//
// An app's URL comes from the configuration only, never from the
// network; the connection is refused when the name resolves to a
// loopback, private, link-local or otherwise internal address unless the
// operator allows it (--app-allow-private), so that a DNS answer cannot
// turn the webhook into a way into the operator's network.
package apps

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/dialplan"
)

// MinSecret is the shortest webhook secret accepted (bytes): 128 bits.
const MinSecret = 16

// DefaultAnswerTimeout is how long a call waits for its app's answer
// before the caller gets 408: a person answering in a browser page needs
// about as long as one answering a desk phone.
const DefaultAnswerTimeout = 30 * time.Second

// App is one web app calls are routed to. Frozen after Parse.
type App struct {
	// Name names the app in tokens (receive:NAME), metrics and logs.
	Name string
	// Pattern is the callee numbers routed to it.
	Pattern dialplan.Pattern
	// URL is where its webhooks go.
	URL *url.URL
	// secret signs the webhooks.
	secret []byte
}

// Spec is an app as the configuration gives it.
type Spec struct {
	Name, Pattern, SecretFile, URL string
}

// ParseSpec parses NAME:PATTERN:SECRET_FILE:URL (the URL, last, keeps its
// colons).
func ParseSpec(s string) (Spec, error) {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return Spec{}, fmt.Errorf("app %q: want NAME:PATTERN:SECRET_FILE:URL", s)
	}
	return Spec{Name: parts[0], Pattern: parts[1], SecretFile: parts[2], URL: parts[3]}, nil
}

// Load checks a Spec and reads its secret.
func Load(sp Spec) (*App, error) {
	if err := apiauth.CheckScope(apiauth.ScopeReceive + ":" + sp.Name); err != nil {
		return nil, fmt.Errorf("app %q: the name must be 1-64 of A-Z a-z 0-9 - _ . + * #", sp.Name)
	}
	p, err := dialplan.ParsePattern(sp.Pattern)
	if err != nil {
		return nil, fmt.Errorf("app %q: %w", sp.Name, err)
	}
	u, err := checkURL(sp.URL)
	if err != nil {
		return nil, fmt.Errorf("app %q: %w", sp.Name, err)
	}
	secret, err := os.ReadFile(sp.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("app %q: secret: %w", sp.Name, err)
	}
	secret = []byte(strings.TrimSpace(string(secret)))
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("app %q: the secret in %s is %d bytes; want at least %d", sp.Name, sp.SecretFile, len(secret), MinSecret)
	}
	return &App{Name: sp.Name, Pattern: p, URL: u, secret: secret}, nil
}

// checkURL accepts an absolute http or https URL without credentials or
// a fragment.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: want http:// or https://", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("url %q: no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("url %q: credentials in the URL would be sent in clear to every redirect; use the signature", s)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("url %q: a fragment is never sent", s)
	}
	return u, nil
}

// Router finds the app a callee number goes to. Frozen after New; safe
// for concurrent use.
type Router struct {
	apps          []*App
	answerTimeout time.Duration
	hooks         *Hooks
}

// Config configures a Router.
type Config struct {
	// Apps in order: the first whose pattern matches takes the call.
	Apps []*App
	// AllowPrivate lets webhooks reach loopback, private and link-local
	// addresses (an app on the same host or LAN).
	AllowPrivate bool
	// AnswerTimeout bounds the wait for an app's answer (0:
	// DefaultAnswerTimeout).
	AnswerTimeout time.Duration
	// Retry shapes webhook retries (zero: DefaultRetry).
	Retry Retry
}

// New returns a Router; nil when no app is configured.
func New(c Config) (*Router, error) {
	if len(c.Apps) == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, a := range c.Apps {
		if seen[a.Name] {
			return nil, fmt.Errorf("app %q given twice", a.Name)
		}
		seen[a.Name] = true
	}
	if c.AnswerTimeout < 0 {
		return nil, errors.New("app answer timeout must not be negative")
	}
	if c.AnswerTimeout == 0 {
		c.AnswerTimeout = DefaultAnswerTimeout
	}
	names := make([]string, len(c.Apps))
	for i, a := range c.Apps {
		names[i] = a.Name
	}
	return &Router{apps: c.Apps, answerTimeout: c.AnswerTimeout, hooks: newHooks(c.AllowPrivate, c.Retry, names)}, nil
}

// Match returns the app that takes calls to callee, if any. A nil Router
// matches nothing.
func (r *Router) Match(callee string) (*App, bool) {
	if r == nil {
		return nil, false
	}
	for _, a := range r.apps {
		if a.Pattern.Match(callee) {
			return a, true
		}
	}
	return nil, false
}

// AnswerTimeout is how long a call waits for its app's answer.
func (r *Router) AnswerTimeout() time.Duration { return r.answerTimeout }

// Hooks delivers the webhooks.
func (r *Router) Hooks() *Hooks { return r.hooks }

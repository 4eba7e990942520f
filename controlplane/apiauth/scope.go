// Package apiauth decides who an HTTP API request comes from and what it
// may do. Three kinds of bearer credential are accepted, all sent as
// "Authorization: Bearer TOKEN" (RFC 6750 section 2.1):
//
//   - the operator's --api-token: every scope, any identity;
//   - API keys (--api-key): long-lived random tokens with scopes and an
//     identity, of which Strait keeps only the SHA-256 (a leaked
//     configuration file gives nobody a usable token; the tokens are 256
//     random bits, so a fast hash is enough, as for GitHub's tokens);
//   - signed tokens: short-lived JWTs (RFC 7519, HS256) that a web app's
//     backend mints for one page with the shared secret (--jwt-secret-file),
//     or gets from POST /v1/tokens, naming the user (sub), the scopes
//     (scope, space-separated as in RFC 9068 section 2.2.3) and an expiry.
//
// The identity a call goes out as ("from") is the credential's user,
// never what the request body says (except for the operator's token and
// admin keys, which may act for anyone).
package apiauth

import (
	"fmt"
	"slices"
	"strings"
)

// Scopes. A credential holds a set of them; admin implies every other.
const (
	// ScopeAdmin: everything, for any identity: registrations, every
	// call and record, minting tokens, /metrics.
	ScopeAdmin = "admin"
	// ScopeCall: place calls (HTTP API and WHIP) as the credential's user,
	// and follow, hang up and send DTMF on that user's calls.
	ScopeCall = "call"
	// ScopeReceive: be told of and answer calls that --route rules send
	// to an app; "receive:NAME" limits it to the app NAME.
	ScopeReceive = "receive"
	// ScopeCDR: read every call record.
	ScopeCDR = "cdr"
	// ScopeUser: the user's own presence, messages, contacts and call
	// history.
	ScopeUser = "user"
)

// known are the scopes a credential may name (receive may carry ":NAME").
var known = []string{ScopeAdmin, ScopeCall, ScopeReceive, ScopeCDR, ScopeUser}

// CheckScope reports whether s is a scope Strait knows.
func CheckScope(s string) error {
	base, app, hasApp := strings.Cut(s, ":")
	if !slices.Contains(known, base) || (hasApp && (base != ScopeReceive || !validName(app))) {
		return fmt.Errorf("unknown scope %q: want %s, or receive:APP", s, strings.Join(known, ", "))
	}
	return nil
}

// validName reports whether s may name a user or an app: what a SIP user
// part takes without escaping, minus the separators of the key syntax.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.+*#", c)
		if !ok {
			return false
		}
	}
	return true
}

// Principal is who a request comes from. The zero value may do nothing.
type Principal struct {
	// Name names the credential for logs ("api-token", the key's name,
	// "jwt:" and the token's id).
	Name string
	// User is the identity calls go out as and whose presence, messages
	// and history are meant; empty for a credential that acts for nobody
	// in particular (the operator's token, an admin key without a user).
	User string
	// Scopes held (ScopeAdmin implies all).
	Scopes []string
}

// Has reports whether p holds scope (or admin).
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, ScopeAdmin) || slices.Contains(p.Scopes, scope)
}

// Admin reports whether p holds the admin scope.
func (p Principal) Admin() bool { return slices.Contains(p.Scopes, ScopeAdmin) }

// MayReceive reports whether p may be told of and answer calls for the
// app named app: "receive" covers every app, "receive:APP" one.
func (p Principal) MayReceive(app string) bool {
	return p.Has(ScopeReceive) || slices.Contains(p.Scopes, ScopeReceive+":"+app)
}

// ReceivesAny reports whether p may receive calls for some app.
func (p Principal) ReceivesAny() bool {
	return p.Has(ScopeReceive) || slices.ContainsFunc(p.Scopes, func(s string) bool { return strings.HasPrefix(s, ScopeReceive+":") })
}

// Sees reports whether p may see a call between caller and callee: an
// admin sees all; anyone else the calls their user is on.
func (p Principal) Sees(caller, callee string) bool {
	return p.Admin() || (p.User != "" && (caller == p.User || callee == p.User))
}

package apiauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the "aud" every signed token must name (RFC 8725 section
// 3.9: a token minted for another service with the same secret must not
// pass here).
const Audience = "strait"

// DefaultMaxTTL bounds a signed token's lifetime (exp - now): a page's
// token is meant to last a working session, not to be kept.
const DefaultMaxTTL = 12 * time.Hour

// minSecret is the shortest JWT secret accepted: HS256 needs a key of at
// least the hash's size (RFC 7518 section 3.2).
const minSecret = 32

// tokenPrefix marks Strait's API keys, so that a leaked one is
// recognisable (secret scanners) and never mistaken for a JWT.
const tokenPrefix = "strait_"

// Key is one configured API key: its name, identity and scopes, and the
// SHA-256 of its token.
type Key struct {
	Name   string
	User   string
	Scopes []string
	Hash   [sha256.Size]byte
}

// ParseKey parses --api-key NAME:SCOPES:USER:SHA256, SCOPES
// comma-separated, USER possibly empty ("ops:admin::9f86...").
func ParseKey(s string) (Key, error) {
	parts := strings.Split(s, ":")
	// receive:APP scopes contain a colon: rejoin the middle.
	if len(parts) < 4 {
		return Key{}, fmt.Errorf("api key %q: want NAME:SCOPES:USER:SHA256 (strait token prints one)", redact(s))
	}
	name, hash, user := parts[0], parts[len(parts)-1], parts[len(parts)-2]
	scopes := strings.Split(strings.Join(parts[1:len(parts)-2], ":"), ",")
	k := Key{Name: name, User: user}
	if !validName(name) {
		return Key{}, fmt.Errorf("api key %q: bad name", name)
	}
	if user != "" && !validName(user) {
		return Key{}, fmt.Errorf("api key %q: bad user %q", name, user)
	}
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != sha256.Size {
		return Key{}, fmt.Errorf("api key %q: the last field must be the token's SHA-256 in hex (64 digits), not the token", name)
	}
	copy(k.Hash[:], b)
	for _, sc := range scopes {
		if err := CheckScope(sc); err != nil {
			return Key{}, fmt.Errorf("api key %q: %v", name, err)
		}
		k.Scopes = append(k.Scopes, sc)
	}
	if user == "" && !k.principal().Admin() && k.principal().Has(ScopeCall) {
		return Key{}, fmt.Errorf("api key %q: scope call needs a user to call as", name)
	}
	return k, nil
}

func (k Key) principal() Principal { return Principal{Name: k.Name, User: k.User, Scopes: k.Scopes} }

// redact hides what may be a token in an error message.
func redact(s string) string {
	if len(s) > 12 {
		return s[:8] + "..."
	}
	return s
}

// NewToken returns a new random API key token and the --api-key value
// that admits it (the token itself is shown once and never stored).
func NewToken(name, user string, scopes []string) (token, key string, err error) {
	b := make([]byte, 32)
	rand.Read(b)
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	key = fmt.Sprintf("%s:%s:%s:%x", name, strings.Join(scopes, ","), user, h)
	if _, err := ParseKey(key); err != nil {
		return "", "", err
	}
	return token, key, nil
}

// Config configures an Authenticator.
type Config struct {
	// Token is the operator's --api-token (every scope); empty: none.
	Token string
	// Keys are the API keys.
	Keys []Key
	// Secret verifies (and Mint signs) HS256 tokens; empty: none.
	Secret []byte
	// MaxTTL bounds a signed token's remaining lifetime (0:
	// DefaultMaxTTL).
	MaxTTL time.Duration
	// Now is the clock (nil: time.Now), for tests.
	Now func() time.Time
}

// Authenticator checks bearer credentials. It is frozen after New and
// safe for concurrent use.
type Authenticator struct {
	cfg  Config
	keys map[[sha256.Size]byte]Key
}

// LoadSecret reads a JWT secret file: its bytes, trailing newline
// trimmed, at least 32 of them.
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) < minSecret {
		return nil, fmt.Errorf("jwt secret %s: %d bytes, want at least %d (e.g. head -c 48 /dev/urandom | base64)", path, len(b), minSecret)
	}
	return b, nil
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < minSecret {
		return nil, fmt.Errorf("jwt secret: %d bytes, want at least %d", len(cfg.Secret), minSecret)
	}
	a := &Authenticator{cfg: cfg, keys: map[[sha256.Size]byte]Key{}}
	names := map[string]bool{}
	for _, k := range cfg.Keys {
		if names[k.Name] {
			return nil, fmt.Errorf("api key %q given twice", k.Name)
		}
		names[k.Name] = true
		a.keys[k.Hash] = k
	}
	return a, nil
}

// Enabled reports whether any credential is configured; when none is,
// every request acts as the operator (loopback only: config.Validate). A
// nil Authenticator has none.
func (a *Authenticator) Enabled() bool {
	return a != nil && a.cfg.Token != "" || len(a.keys) > 0 || len(a.cfg.Secret) > 0
}

// CanMint reports whether Mint works (a secret is configured).
func (a *Authenticator) CanMint() bool { return a != nil && len(a.cfg.Secret) > 0 }

// operator is the principal of the operator's token, and of every request
// when no credential is configured.
var operator = Principal{Name: "api-token", Scopes: []string{ScopeAdmin}}

// Errors of Authenticate; the API answers each with 401 and a
// WWW-Authenticate error code (RFC 6750 section 3.1).
var (
	// ErrNoCredentials: no bearer token was sent.
	ErrNoCredentials = errors.New("missing bearer token")
	// ErrCannotMint: no secret is configured to sign tokens with.
	ErrCannotMint = errors.New("no --jwt-secret-file: Strait cannot sign tokens")
	// ErrInvalid: the token is unknown, malformed, expired or not for
	// Strait.
	ErrInvalid = errors.New("invalid token")
)

// Authenticate returns who sent r.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if !a.Enabled() {
		return operator, nil
	}
	tok, ok := Bearer(r)
	if !ok {
		return Principal{}, ErrNoCredentials
	}
	return a.Check(tok)
}

// Bearer returns the bearer token of r's Authorization header.
func Bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Check returns the principal a token stands for.
func (a *Authenticator) Check(tok string) (Principal, error) {
	if a.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.cfg.Token)) == 1 {
		return operator, nil
	}
	if len(a.keys) > 0 && strings.HasPrefix(tok, tokenPrefix) {
		if k, ok := a.keys[sha256.Sum256([]byte(tok))]; ok {
			return k.principal(), nil
		}
		return Principal{}, ErrInvalid
	}
	if len(a.cfg.Secret) > 0 && strings.Count(tok, ".") == 2 {
		return a.checkJWT(tok)
	}
	return Principal{}, ErrInvalid
}

// Claims are a signed token's claims: the registered ones plus scope.
type Claims struct {
	jwt.RegisteredClaims
	// Scope is the space-separated scopes (RFC 9068 section 2.2.3).
	Scope string `json:"scope"`
}

func (a *Authenticator) checkJWT(tok string) (Principal, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return a.cfg.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithAudience(Audience), jwt.WithTimeFunc(a.cfg.Now), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.ExpiresAt.Sub(a.cfg.Now()) > a.cfg.MaxTTL+time.Minute {
		return Principal{}, fmt.Errorf("%w: lives longer than %v", ErrInvalid, a.cfg.MaxTTL)
	}
	p := Principal{Name: "jwt:" + c.ID, User: c.Subject}
	if p.User != "" && !validName(p.User) {
		return Principal{}, fmt.Errorf("%w: bad sub %q", ErrInvalid, p.User)
	}
	for _, sc := range strings.Fields(c.Scope) {
		if CheckScope(sc) != nil {
			continue // a scope for something else: ignored
		}
		p.Scopes = append(p.Scopes, sc)
	}
	if len(p.Scopes) == 0 {
		return Principal{}, fmt.Errorf("%w: no scope Strait knows", ErrInvalid)
	}
	return p, nil
}

// Mint signs a token for user with scopes, valid for ttl (at most MaxTTL).
func (a *Authenticator) Mint(user string, scopes []string, ttl time.Duration) (string, time.Time, error) {
	if !a.CanMint() {
		return "", time.Time{}, ErrCannotMint
	}
	if user != "" && !validName(user) {
		return "", time.Time{}, fmt.Errorf("bad user %q", user)
	}
	if len(scopes) == 0 {
		return "", time.Time{}, errors.New("no scope")
	}
	for _, sc := range scopes {
		if err := CheckScope(sc); err != nil {
			return "", time.Time{}, err
		}
	}
	if ttl <= 0 || ttl > a.cfg.MaxTTL {
		return "", time.Time{}, fmt.Errorf("ttl %v: want more than 0 and at most %v", ttl, a.cfg.MaxTTL)
	}
	now := a.cfg.Now()
	exp := now.Add(ttl).Truncate(time.Second)
	id := make([]byte, 9)
	rand.Read(id)
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, Audience: jwt.ClaimStrings{Audience}, Issuer: Audience,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp), ID: base64.RawURLEncoding.EncodeToString(id)},
		Scope: strings.Join(scopes, " ")}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.cfg.Secret)
	return s, exp, err
}

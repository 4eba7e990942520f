package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
)

// TokenRequest is the body of POST /v1/tokens: what a web app's backend
// asks for one page.
type TokenRequest struct {
	// User is the identity the token acts as (calls go out from it).
	User string `json:"user"`
	// Scopes are what the token may do (see apiauth): call, receive,
	// receive:APP, cdr, user, admin.
	Scopes []string `json:"scopes"`
	// TTL is its lifetime in seconds (default 3600, at most the
	// configured maximum).
	TTL int `json:"ttl_s,omitempty"`
}

// TokenResponse is the body of a successful POST /v1/tokens.
type TokenResponse struct {
	// Token is the signed token, for "Authorization: Bearer ...".
	Token string `json:"token"`
	// Expires is when it stops working.
	Expires time.Time `json:"expires"`
}

// defaultTokenTTL is a minted token's lifetime when the request names
// none: an hour covers a call or a short working session; the backend
// mints a new one for a page that lives longer.
const defaultTokenTTL = time.Hour

func checkTokenRequest(t *TokenRequest) error {
	if len(t.Scopes) == 0 {
		return errors.New(`"scopes" is required`)
	}
	if t.TTL < 0 {
		return errors.New(`"ttl_s" is negative`)
	}
	for _, s := range t.Scopes {
		if err := apiauth.CheckScope(s); err != nil {
			return err
		}
	}
	return nil
}

// mintToken signs a short-lived token for a page (admin only).
func (a *API) mintToken(w http.ResponseWriter, r *http.Request) {
	if !authOf(a.cfg.Auth).CanMint() {
		WriteProblem(w, r, http.StatusNotImplemented, "", apiauth.ErrCannotMint.Error())
		return
	}
	var req TokenRequest
	if !readBody(w, r, &req, checkTokenRequest) {
		return
	}
	ttl := defaultTokenTTL
	if req.TTL > 0 {
		ttl = time.Duration(req.TTL) * time.Second
	}
	tok, exp, err := authOf(a.cfg.Auth).Mint(req.User, req.Scopes, ttl)
	if err != nil {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, err.Error())
		return
	}
	a.cfg.Log.Info("token minted", "user", req.User, "scopes", req.Scopes, "expires", exp, "by", principal(r).Name)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, TokenResponse{Token: tok, Expires: exp})
}

package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/history"
)

// History reads users' call histories (package history: kept in the
// state store, fed by the call records).
type History interface {
	// Page returns up to limit entries of user's history older than
	// before (nil: from the newest), newest first, and the next page's
	// cursor (nil: no more).
	Page(ctx context.Context, user string, before *history.Cursor, limit int) ([]history.Entry, *history.Cursor, error)
}

// History paging bounds.
const (
	defaultHistoryPage = 50
	maxHistoryPage     = history.PerUser
)

// HistoryPage is the body of GET /v1/history.
type HistoryPage struct {
	// Calls are the user's calls, newest first.
	Calls []history.Entry `json:"calls"`
	// Next, when there are older calls, is the before= that fetches them.
	Next string `json:"next,omitempty"`
}

// history serves the principal's own call history, a page at a time
// (admins may ask for any user with ?user=).
func (a *API) history(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	q := r.URL.Query()
	user := p.User
	if u := q.Get("user"); u != "" {
		if !p.Has(apiauth.ScopeAdmin) && u != p.User {
			WriteProblem(w, r, http.StatusForbidden, ProblemScope, "only an admin credential may read another user's history")
			return
		}
		user = u
	}
	if user == "" {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "this credential has no user: name one with ?user=")
		return
	}
	limit := defaultHistoryPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHistoryPage {
			WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "limit: want 1 to "+strconv.Itoa(maxHistoryPage))
			return
		}
		limit = n
	}
	var before *history.Cursor
	if s := q.Get("before"); s != "" {
		c, err := history.ParseCursor(s)
		if err != nil {
			WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "before: "+err.Error())
			return
		}
		before = &c
	}
	if a.cfg.History == nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "no call history is kept here")
		return
	}
	calls, next, err := a.cfg.History.Page(r.Context(), user, before, limit)
	if err != nil {
		a.cfg.Log.Warn("call history unavailable", "user", user, "err", err)
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the call history store is unavailable")
		return
	}
	page := HistoryPage{Calls: calls}
	if page.Calls == nil {
		page.Calls = []history.Entry{}
	}
	if next != nil {
		page.Next = next.String()
	}
	writeJSON(w, http.StatusOK, page)
}

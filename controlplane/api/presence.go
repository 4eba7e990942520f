package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/strait-sbc/strait/controlplane/presence"
)

// Presence and the address book: an API user publishes its presence
// (PUT /v1/presence), reads anyone's (GET /v1/presence/{user}), hears of
// changes (GET /v1/events/presence, server-sent events) and reads the
// shared address book with everyone's presence (GET /v1/contacts). A user
// who published nothing is available while registered, offline
// otherwise.

// PresenceRequest is the body of PUT /v1/presence.
type PresenceRequest struct {
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
}

// Presence is a user's presence as the API shows it.
type Presence struct {
	User string `json:"user"`
	// Name is the address book's name of the user (--contacts-file), in
	// GET /v1/contacts.
	Name   string `json:"name,omitempty"`
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
	// Updated is when the user last published (absent: never).
	Updated *time.Time `json:"updated,omitempty"`
	// Registered says whether the user has a SIP registration here now.
	Registered bool `json:"registered"`
}

// presenceOf combines what user published (if anything) with its
// registration.
func (a *API) presenceOf(user string, s presence.State, published bool) Presence {
	p := Presence{User: user, Registered: a.cfg.Registry != nil && len(a.cfg.Registry.Lookup(user)) > 0}
	switch {
	case published:
		p.Status, p.Note = s.Status, s.Note
		u := s.Updated
		p.Updated = &u
	case p.Registered:
		p.Status = "available"
	default:
		p.Status = "offline"
	}
	return p
}

// needPresence answers 503 when no presence service is configured.
func (a *API) needPresence(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.Presence == nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "no presence service here")
		return false
	}
	return true
}

// ownUser is the credential's user, or a 400 when it has none.
func ownUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	u := principal(r).User
	if u == "" {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "this credential has no user")
		return "", false
	}
	return u, true
}

func checkPresenceRequest(p *PresenceRequest) error { return presence.Check(p.Status, p.Note) }

func (a *API) setPresence(w http.ResponseWriter, r *http.Request) {
	user, ok := ownUser(w, r)
	if !ok || !a.needPresence(w, r) {
		return
	}
	var req PresenceRequest
	if !readBody(w, r, &req, checkPresenceRequest) {
		return
	}
	s, err := a.cfg.Presence.Set(r.Context(), user, req.Status, req.Note)
	if err != nil {
		a.cfg.Log.Warn("presence not stored", "user", user, "err", err)
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the presence store is unavailable")
		return
	}
	if a.cfg.PresenceSIP != nil {
		a.cfg.PresenceSIP.Published(s)
	}
	writeJSON(w, http.StatusOK, a.presenceOf(user, s, true))
}

// maxWatched bounds the users one presence stream names.
const maxWatched = 100

func (a *API) getPresence(w http.ResponseWriter, r *http.Request) {
	if !a.needPresence(w, r) {
		return
	}
	user := r.PathValue("user")
	if len(user) > 64 {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "user: at most 64 characters")
		return
	}
	s, ok, err := a.cfg.Presence.Get(r.Context(), user)
	if err != nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the presence store is unavailable")
		return
	}
	writeJSON(w, http.StatusOK, a.presenceOf(user, s, ok))
}

// presenceEvents streams presence changes as "presence" events: every
// change, or with ?user= (repeatable) those of the users named, who are
// then subscribed to at the upstream in trunk mode.
func (a *API) presenceEvents(w http.ResponseWriter, r *http.Request) {
	if !a.needPresence(w, r) {
		return
	}
	users := r.URL.Query()["user"]
	if len(users) > maxWatched {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "user: at most 100")
		return
	}
	for _, u := range users {
		if u == "" || len(u) > 64 {
			WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "user: 1 to 64 characters")
			return
		}
	}
	watch := a.cfg.Presence.Watch
	if len(users) > 0 && a.cfg.PresenceSIP != nil {
		watch = func() (<-chan presence.State, func()) {
			ch, stop := a.cfg.Presence.Watch()
			var stops []func()
			for _, u := range slices.Compact(slices.Sorted(slices.Values(users))) {
				stops = append(stops, a.cfg.PresenceSIP.Watch(u))
			}
			return ch, func() {
				for _, s := range stops {
					s()
				}
				stop()
			}
		}
	}
	streamEvents(w, r, "strait presence", watch, func(s presence.State) (string, any, bool, bool) {
		if len(users) > 0 && !slices.Contains(users, s.User) {
			return "", nil, false, false
		}
		return "presence", a.presenceOf(s.User, s, true), true, false
	})
}

// Contact is one entry of the address book.
type Contact = Presence

// contacts serves the shared address book: the configured users
// (Directory), whoever is registered, and whoever published a presence,
// each with its presence, by user.
func (a *API) contacts(w http.ResponseWriter, r *http.Request) {
	if !a.needPresence(w, r) {
		return
	}
	all, err := a.cfg.Presence.All(r.Context())
	if err != nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the presence store is unavailable")
		return
	}
	var users []string
	if a.cfg.Directory != nil {
		users = append(users, a.cfg.Directory()...)
	}
	if a.cfg.Registry != nil {
		for _, b := range a.cfg.Registry.All() {
			users = append(users, b.AOR)
		}
	}
	for u := range all {
		users = append(users, u)
	}
	slices.Sort(users)
	users = slices.Compact(users)
	out := make([]Contact, 0, len(users))
	for _, u := range users {
		s, ok := all[u]
		c := a.presenceOf(u, s, ok)
		c.Name = a.cfg.Names[u]
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"contacts": out})
}

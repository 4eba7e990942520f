// Package registrar keeps who is reachable where. Browsers and SIP devices
// REGISTER; in trunk mode Strait relays the registration to the PBX under
// a Contact of its own (one key per binding, so the PBX's INVITE says which
// browser it is for), and in standalone mode it is the registrar itself,
// with digest authentication against configured users.
//
// A browser's binding lives on its WebSocket flow (RFC 5626): requests to
// it can only go back over that connection, so when the connection closes
// its bindings go too (and are removed upstream).
package registrar

import (
	"crypto/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/state"
)

// Binding is one registered contact of a user.
type Binding struct {
	// Key identifies the binding; in trunk mode it is the user part of
	// the Contact Strait registers upstream.
	Key string
	// AOR is the user name (the To user of the REGISTER).
	AOR string
	// Contact is the device's own Contact URI (for a browser,
	// sip:x@y.invalid;transport=ws).
	Contact sip.Uri
	// Instance and RegID are RFC 5626's +sip.instance and reg-id.
	Instance, RegID string
	// Transport and Source are where the REGISTER came from: for a
	// browser, its WebSocket flow.
	Transport, Source string
	// Expires is when the binding lapses.
	Expires time.Time
	// Registered is when it was last refreshed.
	Registered time.Time
	// Holder is the instance id of the control plane that holds the
	// binding's flow (its browser's WebSocket) when several share one
	// store (share.go): a request for a browser held by a live peer goes
	// through that peer. "" (no shared store) or this process's id: held
	// here.
	Holder string

	// upstream relay state (trunk mode)
	upCallID  string
	upFromTag string
	upCSeq    uint32
	upAuth    sip.Header // the last Authorization/Proxy-Authorization sent
	upTarget  string     // the upstream target (Key) that last took the REGISTER
}

// WebSocket reports whether the binding is a browser's.
func (b *Binding) WebSocket() bool {
	return strings.EqualFold(b.Transport, "WS") || strings.EqualFold(b.Transport, "WSS")
}

// Registry holds bindings. It is safe for concurrent use.
type Registry struct {
	now func() time.Time

	mu       sync.Mutex // guards the fields below
	byKey    map[string]*Binding
	gone     map[string]*Binding // bindings whose flow closed, until they would have lapsed
	onChange func(n int)
	store    *state.Writer     // nil: nothing outlives the process (see Persist)
	pending  []state.Change    // changes for store, handed over by flush
	self     string            // this process's instance id (Share); "" alone
	publish  func([]byte)      // tells the peers of a change (Share); nil alone
	alive    func(string) bool // whether a holder is a live peer (Share)
	shared   [][]byte          // changes for publish, handed over by flush
}

// local reports whether b's flow is held by this process. r.mu held or b
// a copy.
func (r *Registry) local(b *Binding) bool { return b.Holder == r.self }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{now: time.Now, byKey: map[string]*Binding{}, gone: map[string]*Binding{}}
}

// OnChange registers f, called with the binding count after every change.
func (r *Registry) OnChange(f func(n int)) {
	r.mu.Lock()
	r.onChange = f
	r.mu.Unlock()
}

func (r *Registry) changed() {
	if r.onChange != nil {
		r.onChange(len(r.byKey))
	}
}

// newKey returns a random binding key: 16 lower-case letters and digits,
// a valid SIP user part.
func newKey() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// same reports whether two bindings of one AOR are the same device: same
// +sip.instance and reg-id when given (RFC 5626 section 6), else the same
// Contact URI.
func same(a *Binding, aor, contact, instance, regID string) bool {
	if a.AOR != aor {
		return false
	}
	if instance != "" || a.Instance != "" {
		return a.Instance == instance && a.RegID == regID
	}
	return a.Contact.String() == contact
}

// find returns the binding of aor matching the device, or nil. r.mu held.
func (r *Registry) find(aor, contact, instance, regID string) *Binding {
	for _, b := range r.byKey {
		if same(b, aor, contact, instance, regID) {
			return b
		}
	}
	return nil
}

// Find returns a copy of the binding of aor for this device, if any,
// including one whose flow closed (so a browser that comes back keeps its
// key).
func (r *Registry) Find(aor string, contact sip.Uri, instance, regID string) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.find(aor, contact.String(), instance, regID); b != nil {
		return *b, true
	}
	for _, g := range r.gone {
		if same(g, aor, contact.String(), instance, regID) {
			return *g, true
		}
	}
	return Binding{}, false
}

// Put adds or refreshes a binding, matched to an existing one as [Find]
// does (keeping its key). It returns the stored binding.
func (r *Registry) Put(b Binding) Binding {
	defer r.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.find(b.AOR, b.Contact.String(), b.Instance, b.RegID)
	if old == nil && b.Key == "" {
		// A browser back after its flow closed keeps its key, so that what
		// the PBX has bound reaches it again at once.
		for k, g := range r.gone {
			if same(g, b.AOR, b.Contact.String(), b.Instance, b.RegID) {
				old = g
				delete(r.gone, k)
				break
			}
		}
	}
	if old != nil {
		b.Key = old.Key
		if b.upCallID == "" {
			b.upCallID, b.upFromTag, b.upCSeq, b.upAuth, b.upTarget = old.upCallID, old.upFromTag, old.upCSeq, old.upAuth, old.upTarget
		}
	}
	if b.Key == "" {
		b.Key = newKey()
	}
	delete(r.gone, b.Key)
	b.Registered = r.now()
	b.Holder = r.self
	stored := b
	r.byKey[b.Key] = &stored
	r.save(&stored, false)
	r.changed()
	return stored
}

// Keep is Put for a registration still in progress upstream (the CSeq,
// Call-ID, credentials and target it uses are kept even if the upstream
// refuses), except that a binding whose flow closed stays so: it becomes
// reachable again, on the browser's new flow, only with the Put of the
// upstream's acceptance. Put would have made it reachable at once at its
// old flow, and a peer that learnt that routed the browser's calls to a
// WebSocket that no longer exists (a browser back on another control
// plane after its holder handed over).
func (r *Registry) Keep(b Binding) {
	r.mu.Lock()
	g := r.gone[b.Key]
	if g == nil || r.byKey[b.Key] != nil {
		r.mu.Unlock()
		r.Put(b)
		return
	}
	defer r.flush()
	defer r.mu.Unlock()
	g.upCallID, g.upFromTag, g.upCSeq, g.upAuth, g.upTarget = b.upCallID, b.upFromTag, b.upCSeq, b.upAuth, b.upTarget
	g.Holder = r.self
	r.save(g, true)
}

// Remove deletes a binding by key and returns it.
func (r *Registry) Remove(key string) (Binding, bool) {
	defer r.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.byKey[key]
	if !ok {
		return Binding{}, false
	}
	delete(r.byKey, key)
	if r.local(b) {
		r.remove(key)
	}
	r.changed()
	return *b, true
}

// RemoveSource deletes every binding that came from a flow and returns
// them.
func (r *Registry) RemoveSource(source string) []Binding {
	defer r.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Binding
	for k, b := range r.byKey {
		if b.Source == source && r.local(b) {
			out = append(out, *b)
			delete(r.byKey, k)
			if r.now().Before(b.Expires) {
				r.gone[k] = b // its record stays: a restart finds it gone too
				r.save(b, true)
			} else {
				r.remove(k)
			}
		}
	}
	if len(out) > 0 {
		r.changed()
	}
	return out
}

// FlowFailed reports whether key named a binding whose flow closed and
// that has not been registered again: a request for it gets 430 Flow
// Failed (RFC 5626 section 5.3).
func (r *Registry) FlowFailed(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.gone[key]
	return ok && r.now().Before(g.Expires)
}

// FlowFailedAOR reports whether aor has no live binding but one whose flow
// closed.
func (r *Registry) FlowFailedAOR(aor string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, g := range r.gone {
		if g.AOR == aor && now.Before(g.Expires) {
			return true
		}
	}
	return false
}

// ByKey returns a live binding by key.
func (r *Registry) ByKey(key string) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.byKey[key]
	if !ok || r.now().After(b.Expires) {
		return Binding{}, false
	}
	return *b, true
}

// Lookup returns the live bindings of aor (user names compare exactly),
// most recently registered first.
func (r *Registry) Lookup(aor string) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Binding
	now := r.now()
	for _, b := range r.byKey {
		if b.AOR == aor && now.Before(b.Expires) {
			out = append(out, *b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registered.After(out[j].Registered) })
	return out
}

// FromSource returns the AORs registered from a flow or address of this
// process's (a peer's flow of the same address is another connection).
func (r *Registry) FromSource(source string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	now := r.now()
	for _, b := range r.byKey {
		if b.Source == source && now.Before(b.Expires) && r.local(b) {
			out = append(out, b.AOR)
		}
	}
	return out
}

// FlowOf returns the flow (source) of the most recently registered live
// browser binding whose Contact names the same user and host as contact
// (see [Registry.NewestFlow]).
func (r *Registry) FlowOf(contact sip.Uri) (string, bool) {
	b, ok := r.NewestFlow(contact)
	return b.Source, ok
}

// NewestFlow returns the most recently registered live browser binding
// whose Contact names the same user and host as contact: its flow
// (Source, held by Holder) is where requests in a dialog with that
// browser go once its first WebSocket is gone (a control plane
// restarted or died, the browser reconnected and registered again with
// the same Contact, as JsSIP and SIP.js do; RFC 5626 section 5.3 routes
// by the registration's flow the same way). URI parameters are not
// compared: JsSIP adds ";ob" to its dialogs' Contact and not to its
// REGISTER's.
func (r *Registry) NewestFlow(contact sip.Uri) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *Binding
	now := r.now()
	for _, b := range r.byKey {
		if !b.WebSocket() || !now.Before(b.Expires) || b.Contact.User != contact.User || !strings.EqualFold(b.Contact.Host, contact.Host) {
			continue
		}
		if best == nil || b.Registered.After(best.Registered) {
			best = b
		}
	}
	if best == nil {
		return Binding{}, false
	}
	return *best, true
}

// Sources returns the set of this process's sources (flows) holding a
// live binding.
func (r *Registry) Sources() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make(map[string]bool, len(r.byKey))
	for _, b := range r.byKey {
		if now.Before(b.Expires) && r.local(b) {
			out[b.Source] = true
		}
	}
	return out
}

// Expire removes lapsed bindings and returns them.
func (r *Registry) Expire() []Binding {
	defer r.flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Binding
	now := r.now()
	for k, b := range r.byKey {
		if !now.Before(b.Expires) {
			out = append(out, *b)
			delete(r.byKey, k)
			if r.local(b) { // a peer's lapses there too
				r.remove(k)
			}
		}
	}
	for k, g := range r.gone {
		if !now.Before(g.Expires) {
			delete(r.gone, k)
			if r.local(g) {
				r.remove(k)
			}
		}
	}
	if len(out) > 0 {
		r.changed()
	}
	return out
}

// Len is the number of bindings.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// All returns every binding (for the API and tests).
func (r *Registry) All() []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Binding, 0, len(r.byKey))
	for _, b := range r.byKey {
		out = append(out, *b)
	}
	return out
}

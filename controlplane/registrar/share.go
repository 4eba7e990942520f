package registrar

import (
	"encoding/json"
)

// Several control planes on one shared store (package cluster) find each
// other's registrations: each binding names its Holder, the control plane
// whose WebSocket carries it, and every change a process makes to the
// bindings it holds is published to the others (Share), which keep a copy
// (ApplyShared). A request for a browser another live control plane holds
// is then routed from this copy, with no store round trip: the binding's
// Holder says where its flow is (package cluster forwards over it).
//
// The copies follow the store's records: a process that starts loads
// them (Persist); one whose subscription was lost and made again (Redis
// pub/sub keeps nothing published meanwhile) reads them again
// (ResyncShared).

// sharedChange is one published change: a binding's record (Rec, its
// Gone flag set when its flow closed) or the removal of Key.
type sharedChange struct {
	Holder string          `json:"holder"`
	Key    string          `json:"key"`
	Rec    json.RawMessage `json:"rec,omitempty"`
}

// Share makes the registry one of several on a shared store: self is this
// process's instance id (the Holder of the bindings registered here);
// publish, called without locks from the goroutine that changed a
// binding, must not block (it queues the message for the peers); alive
// reports whether a holder is a live peer (Persist keeps the bindings of
// live peers as theirs, and makes the rest this process's). Call it once,
// before Persist.
func (r *Registry) Share(self string, publish func(msg []byte), alive func(holder string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self, r.publish, r.alive = self, publish, alive
}

// Self is the instance id given to Share ("" alone).
func (r *Registry) Self() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.self
}

// share queues a local binding's record v for the peers. r.mu held.
func (r *Registry) share(v []byte) {
	if r.publish == nil {
		return
	}
	msg, err := json.Marshal(sharedChange{Holder: r.self, Rec: v})
	if err == nil {
		r.shared = append(r.shared, msg)
	}
}

// shareRemoval queues the removal of a local binding. r.mu held.
func (r *Registry) shareRemoval(key string) {
	if r.publish == nil {
		return
	}
	msg, err := json.Marshal(sharedChange{Holder: r.self, Key: key})
	if err == nil {
		r.shared = append(r.shared, msg)
	}
}

// ApplyShared applies a change a peer published (Share). Malformed
// messages and this process's own are ignored. A binding a peer now holds
// replaces this process's copy, even one registered here (the browser
// moved to the peer); a removal deletes only a copy held by the removing
// peer.
func (r *Registry) ApplyShared(msg []byte) {
	var c sharedChange
	if json.Unmarshal(msg, &c) != nil || c.Holder == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Holder == r.self {
		return
	}
	if c.Rec != nil {
		if r.applyPeer(c.Holder, c.Rec) {
			r.changed()
		}
		return
	}
	if b := r.byKey[c.Key]; b != nil && b.Holder == c.Holder {
		delete(r.byKey, c.Key)
		r.changed()
	}
	if g := r.gone[c.Key]; g != nil && g.Holder == c.Holder {
		delete(r.gone, c.Key)
	}
}

// applyPeer applies a binding's record rec that holder published (or the
// store holds), and reports whether it changed anything. r.mu held.
func (r *Registry) applyPeer(holder string, rec []byte) bool {
	var br bindingRecord
	if json.Unmarshal(rec, &br) != nil || br.Key == "" {
		return false
	}
	b, err := br.binding()
	if err != nil || !r.now().Before(b.Expires) || b.AOR == "" {
		return false
	}
	b.Holder = holder
	if old := r.byKey[b.Key]; old != nil && old.Holder != holder && old.Registered.After(b.Registered) {
		return false // a newer registration elsewhere (a late message)
	}
	if br.Gone {
		if old := r.byKey[b.Key]; old != nil && old.Holder == holder {
			delete(r.byKey, b.Key)
		}
		if _, held := r.byKey[b.Key]; !held {
			r.gone[b.Key] = &b
		}
	} else {
		delete(r.gone, b.Key)
		r.byKey[b.Key] = &b
	}
	return true
}

// ResyncShared catches this process's copies of the peers' bindings up
// with the store's records recs (state.Bindings, by key), after its
// subscription to their changes was lost and made again (a Redis
// reconnection: what was published meanwhile is lost). Each peer's
// record is applied as its published change would have been: a browser
// that registered again elsewhere meanwhile is routed to its new holder
// at once, not at its next REGISTER. This process's own records, and
// records that name no holder, are left alone. A copy whose record was
// deleted meanwhile (an unregistration) stays until it lapses: after a
// Redis restarted empty, the peers write their records again only after
// this, and a copy dropped now would be missed until then.
func (r *Registry) ResyncShared(recs map[string][]byte) (applied int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range recs {
		var h struct {
			Holder string `json:"holder"`
		}
		if json.Unmarshal(v, &h) != nil || h.Holder == "" || h.Holder == r.self {
			continue
		}
		if r.applyPeer(h.Holder, v) {
			applied++
		}
	}
	if applied > 0 {
		r.changed()
	}
	return applied
}

// HolderGone turns the bindings held by a control plane that died into
// bindings whose flow closed (430 until the browser registers again,
// keeping its key): its WebSockets died with it.
func (r *Registry) HolderGone(holder string) {
	if holder == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, b := range r.byKey {
		if b.Holder == holder && b.WebSocket() {
			delete(r.byKey, k)
			r.gone[k] = b
			n++
		}
	}
	if n > 0 {
		r.changed()
	}
}

// HolderFlowGone turns the bindings a peer held on one flow into bindings
// whose flow closed (430 until the browser registers again, keeping its
// key): the peer handed that WebSocket over (SIGUSR2) or died with it,
// and the browser reconnects on a new flow.
func (r *Registry) HolderFlowGone(holder, flow string) {
	if holder == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, b := range r.byKey {
		if b.Holder == holder && b.Source == flow && b.WebSocket() {
			delete(r.byKey, k)
			r.gone[k] = b
			n++
		}
	}
	if n > 0 {
		r.changed()
	}
}

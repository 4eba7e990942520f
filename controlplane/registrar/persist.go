package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/state"
)

// bindingRecord is a binding as the state store keeps it, relay state
// included: a control plane started after this one keeps every binding's
// key (the PBX routes to it) and goes on registering it upstream with the
// same Call-ID, CSeq and credentials.
type bindingRecord struct {
	Key        string    `json:"key"`
	AOR        string    `json:"aor"`
	Contact    string    `json:"contact"`
	Instance   string    `json:"instance,omitempty"`
	RegID      string    `json:"reg_id,omitempty"`
	Transport  string    `json:"transport"`
	Source     string    `json:"source"`
	Expires    time.Time `json:"expires"`
	Registered time.Time `json:"registered"`
	UpCallID   string    `json:"up_call_id,omitempty"`
	UpFromTag  string    `json:"up_from_tag,omitempty"`
	UpCSeq     uint32    `json:"up_cseq,omitempty"`
	UpAuthName string    `json:"up_auth_name,omitempty"`
	UpAuth     string    `json:"up_auth,omitempty"`
	UpTarget   string    `json:"up_target,omitempty"`
	Holder     string    `json:"holder,omitempty"`
	// Gone: the flow closed (a browser's WebSocket); kept for its key.
	Gone bool `json:"gone,omitempty"`
}

func recordOf(b *Binding) bindingRecord {
	r := bindingRecord{Key: b.Key, AOR: b.AOR, Contact: b.Contact.String(), Instance: b.Instance, RegID: b.RegID,
		Transport: b.Transport, Source: b.Source, Expires: b.Expires, Registered: b.Registered,
		UpCallID: b.upCallID, UpFromTag: b.upFromTag, UpCSeq: b.upCSeq, UpTarget: b.upTarget, Holder: b.Holder}
	if b.upAuth != nil {
		r.UpAuthName, r.UpAuth = b.upAuth.Name(), b.upAuth.Value()
	}
	return r
}

func (r bindingRecord) binding() (Binding, error) {
	b := Binding{Key: r.Key, AOR: r.AOR, Instance: r.Instance, RegID: r.RegID, Transport: r.Transport, Source: r.Source,
		Expires: r.Expires, Registered: r.Registered, upCallID: r.UpCallID, upFromTag: r.UpFromTag, upCSeq: r.UpCSeq,
		upTarget: r.UpTarget, Holder: r.Holder}
	if err := sip.ParseUri(r.Contact, &b.Contact); err != nil {
		return Binding{}, err
	}
	if r.UpAuthName != "" {
		b.upAuth = sip.NewHeader(r.UpAuthName, r.UpAuth)
	}
	return b, nil
}

// Persist writes every later change of the registry through w, after
// loading what w's store holds: bindings of SIP devices come back live;
// bindings of browsers come back as bindings whose flow closed (their
// WebSocket died with the previous process), so that a browser that
// reconnects and registers again keeps its key, and requests for it get
// 430 until it does; but those a live peer holds (see Share) come back as
// that peer's. Call it once, after Share and before the registry is used.
func (r *Registry) Persist(ctx context.Context, w *state.Writer) (int, error) {
	recs, err := w.Store().Load(ctx, state.Bindings)
	r.mu.Lock()
	r.store = w
	now := r.now()
	n := 0
	for key, v := range recs {
		var br bindingRecord
		b, derr := Binding{}, json.Unmarshal(v, &br)
		if derr == nil {
			b, derr = br.binding()
		}
		if derr != nil || b.Key != key || !now.Before(b.Expires) {
			r.pending = append(r.pending, state.Change{Kind: state.Bindings, Key: key})
			continue
		}
		if b.Holder != r.self && (r.alive == nil || !r.alive(b.Holder)) {
			// Held by a process that is gone (the previous run of this
			// one under another id, a dead peer): this process answers
			// for it from now on.
			b.Holder = r.self
		}
		if b.WebSocket() && (r.local(&b) || br.Gone) {
			r.gone[key] = &b
		} else {
			r.byKey[key] = &b
		}
		n++
	}
	r.changed()
	r.mu.Unlock()
	r.flush()
	return n, err
}

// RewriteState queues again the record of every binding this process
// holds, live or whose flow closed (state.Writer.OnLost: the store lost
// its records); the peers rewrite theirs.
func (r *Registry) RewriteState() {
	r.mu.Lock()
	if r.store == nil {
		r.mu.Unlock()
		return
	}
	for _, b := range r.byKey {
		if r.local(b) {
			r.save(b, false)
		}
	}
	for _, b := range r.gone {
		if r.local(b) {
			r.save(b, true)
		}
	}
	r.mu.Unlock()
	r.flush()
}

// save queues a binding's record (gone: its flow closed); remove its
// deletion. r.mu held; flush hands them to the Writer (and the peers,
// share.go) once r.mu is released (no lock nests).
func (r *Registry) save(b *Binding, gone bool) {
	if r.store == nil {
		return
	}
	rec := recordOf(b)
	rec.Gone = gone
	v, err := json.Marshal(rec)
	if err != nil {
		return
	}
	r.pending = append(r.pending, state.Change{Kind: state.Bindings, Key: b.Key, Value: v})
	r.share(v)
}

func (r *Registry) remove(key string) {
	if r.store != nil {
		r.pending = append(r.pending, state.Change{Kind: state.Bindings, Key: key})
	}
	r.shareRemoval(key)
}

// flush hands the queued changes to the Writer. Called without r.mu.
func (r *Registry) flush() {
	r.mu.Lock()
	w, pending := r.store, r.pending
	publish, shared := r.publish, r.shared
	r.pending, r.shared = nil, nil
	r.mu.Unlock()
	for _, m := range shared {
		publish(m)
	}
	for _, c := range pending {
		if c.Value == nil {
			w.Delete(c.Kind, c.Key)
		} else {
			w.Put(c.Kind, c.Key, c.Value)
		}
	}
}

// NonceLifetime is how long a nonce Strait issued stays valid.
const NonceLifetime = nonceLifetime

// storeNonceTimeout bounds the store's answer about one nonce: an
// authentication waits for it.
const storeNonceTimeout = 500 * time.Millisecond

// StoreNonces is a NonceStore in the state store, shared by every control
// plane on it: a nonce count is fresh once, wherever it is presented. A
// store that does not answer makes every nonce "forgotten": the client
// gets a fresh one, never a replay through.
//
// A store that lost its records (a Redis restarted empty) lost the
// counts: a count already used must not pass again. Each count is raised
// in one script with a check of the store's generation (state.Writer.
// Advance): the first use after the loss finds another generation (or
// none), is refused and has the Writer check the store at once, so the
// loss is seen by the first authentication after it, not up to a ping
// (1 s) later, and at no extra round trip. From then on every nonce
// issued up to the instant the loss was seen (ForgetBefore, also from the
// Writer's OnLost) or the store's new generation was made (a control
// plane that started after the loss never saw the old one) is forgotten:
// the client answers the stale=true challenge with a fresh nonce, without
// asking its user. Nonce times are milliseconds; the fresh nonces are
// stamped after that instant (NotBefore).
type StoreNonces struct {
	W *state.Writer
	// forgotten: nonces issued at or before this (Unix ms) are forgotten.
	forgotten atomic.Int64
}

var _ NonceFloor = (*StoreNonces)(nil)

// ForgetBefore makes every nonce issued before t, or at t, forgotten.
func (s *StoreNonces) ForgetBefore(t time.Time) {
	for {
		old := s.forgotten.Load()
		if t.UnixMilli() <= old || s.forgotten.CompareAndSwap(old, t.UnixMilli()) {
			return
		}
	}
}

// floor is the last instant (Unix ms) whose nonces are forgotten: the
// loss seen last or the making of the store's generation, whichever is
// later.
func (s *StoreNonces) floor() int64 {
	f := s.forgotten.Load()
	if g := state.GenerationTime(s.W.Generation()); !g.IsZero() {
		f = max(f, g.UnixMilli())
	}
	return f
}

// NotBefore implements NonceFloor: the instant after the last one whose
// nonces are forgotten.
func (s *StoreNonces) NotBefore() time.Time { return time.UnixMilli(s.floor() + 1) }

// Use implements NonceStore.
func (s *StoreNonces) Use(nonce string, issued time.Time, nc uint64) NonceUse {
	if issued.UnixMilli() <= s.floor() {
		return NonceForgotten
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeNonceTimeout)
	defer cancel()
	ttl := time.Until(issued.Add(nonceLifetime + time.Minute))
	if ttl <= 0 {
		return NonceForgotten
	}
	fresh, err := s.W.Advance(ctx, state.Nonces, nonce, nc, ttl)
	switch {
	case errors.Is(err, state.ErrStoreLost):
		s.ForgetBefore(time.Now())
		return NonceForgotten
	case err != nil:
		return NonceForgotten
	case fresh:
		return NonceFresh
	}
	return NonceReplayed
}

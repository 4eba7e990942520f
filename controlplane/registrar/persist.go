package registrar

import (
	"context"
	"encoding/json"
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
}

func recordOf(b *Binding) bindingRecord {
	r := bindingRecord{Key: b.Key, AOR: b.AOR, Contact: b.Contact.String(), Instance: b.Instance, RegID: b.RegID,
		Transport: b.Transport, Source: b.Source, Expires: b.Expires, Registered: b.Registered,
		UpCallID: b.upCallID, UpFromTag: b.upFromTag, UpCSeq: b.upCSeq, UpTarget: b.upTarget}
	if b.upAuth != nil {
		r.UpAuthName, r.UpAuth = b.upAuth.Name(), b.upAuth.Value()
	}
	return r
}

func (r bindingRecord) binding() (Binding, error) {
	b := Binding{Key: r.Key, AOR: r.AOR, Instance: r.Instance, RegID: r.RegID, Transport: r.Transport, Source: r.Source,
		Expires: r.Expires, Registered: r.Registered, upCallID: r.UpCallID, upFromTag: r.UpFromTag, upCSeq: r.UpCSeq,
		upTarget: r.UpTarget}
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
// 430 until it does. Call it once, before the registry is used.
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
		if b.WebSocket() {
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

// RewriteState queues again every binding's record, live or whose flow
// closed (state.Writer.OnLost: the store lost its records).
func (r *Registry) RewriteState() {
	r.mu.Lock()
	if r.store == nil {
		r.mu.Unlock()
		return
	}
	for _, b := range r.byKey {
		r.save(b)
	}
	for _, b := range r.gone {
		r.save(b)
	}
	r.mu.Unlock()
	r.flush()
}

// save queues a binding's record; remove its deletion. r.mu held; flush
// hands them to the Writer once r.mu is released (no lock nests).
func (r *Registry) save(b *Binding) {
	if r.store == nil {
		return
	}
	v, err := json.Marshal(recordOf(b))
	if err != nil {
		return
	}
	r.pending = append(r.pending, state.Change{Kind: state.Bindings, Key: b.Key, Value: v})
}

func (r *Registry) remove(key string) {
	if r.store != nil {
		r.pending = append(r.pending, state.Change{Kind: state.Bindings, Key: key})
	}
}

// flush hands the queued changes to the Writer. Called without r.mu.
func (r *Registry) flush() {
	r.mu.Lock()
	w, pending := r.store, r.pending
	r.pending = nil
	r.mu.Unlock()
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
type StoreNonces struct{ W *state.Writer }

// Use implements NonceStore.
func (s StoreNonces) Use(nonce string, issued time.Time, nc uint64) NonceUse {
	ctx, cancel := context.WithTimeout(context.Background(), storeNonceTimeout)
	defer cancel()
	ttl := time.Until(issued.Add(nonceLifetime + time.Minute))
	if ttl <= 0 {
		return NonceForgotten
	}
	fresh, err := s.W.Store().Advance(ctx, state.Nonces, nonce, nc, ttl)
	switch {
	case err != nil:
		return NonceForgotten
	case fresh:
		return NonceFresh
	}
	return NonceReplayed
}

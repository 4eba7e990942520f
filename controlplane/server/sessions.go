package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/selfsign"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/dataplane/relay"
)

// keepInterval is how often the all-in-one's sessions are looked at for
// changes to save; a shorter interval costs a stamp per session more
// often (about a microsecond each, no allocation).
const keepInterval = 200 * time.Millisecond

// keepSettle: a changed session is written once its stamp held still for
// a sweep, or after this many sweeps of changes. A call's setup changes
// its session several times within a second (creation, answer, ICE, DTLS,
// first media): waiting for it to settle writes it once or twice instead
// of four or five times (each write a record of a few kB in the store's
// next transaction). Except for one thing: a session whose WebRTC leg got
// its SRTP keys since its record (the DTLS handshake completed) is written
// at the next sweep. The record without them re-creates the session
// keyless: the browser keeps its DTLS association and does no new
// handshake, so the restored leg never decrypts or encrypts a packet and
// the call carries on silent until its media timeout (an e2e restart
// under load killed strait 2 s after the handshake, before the settled
// record reached the store). A crash within a sweep and a store write
// (about 300 ms with Bolt) of the handshake still restarts keyless.
const keepSettle = 3

// sessionKeeper keeps the in-process dataplane's sessions in the state
// store (kind state.Sessions), so that an all-in-one strait that restarts
// (a crash, kill -9, an upgrade) re-creates them on the same ports with
// the same ICE credentials and SRTP keys before it restores the calls
// (relay.Session.Save, relay.Engine.RestoreSession): the browsers' media
// and consent checks carry on.
//
// The records hold SRTP master keys: they go only to the store (the
// embedded file is 0600 in a 0700 directory; Redis is the operator's
// trust domain) and are never logged.
type sessionKeeper struct {
	// Frozen after newSessionKeeper.
	eng *relay.Engine
	w   *state.Writer
	log *slog.Logger
	// mine says whether a saved session is this process's to re-create,
	// by its creator's instance id (its dpool.LabelInstance): with a
	// store of its own every one (nil); with a shared store (several
	// control planes on Redis) this instance's, unlabelled ones and those
	// of instances holding no lease (a previous run of this process under
	// another id), never a live peer's (see restore).
	mine func(instance string) bool

	mu sync.Mutex // serialises sweeps; guards the fields below
	// stamps are the stamps of the sessions last written, by id: a record
	// exists in the store for each.
	stamps map[string]written
	// changed are sessions whose stamp differs from the one written: the
	// stamp seen at the last sweep, and for how many sweeps it changed.
	changed map[string]settling
	// gen counts sweeps: an entry of stamps or changed not marked with
	// the current sweep's is a session that ended (no map of the live
	// ones is built per sweep: at 1 000 calls/s thousands of sessions
	// are live, swept five times a second).
	gen  uint64
	done bool // final: no more writes
}

// written is a session's record in the store: the stamp it was written
// at, the last sweep that saw the session, and how many WebRTC legs' SRTP
// keys the record holds (relay.Session.Keyed).
type written struct {
	stamp, seen uint64
	keyed       int
}

type settling struct {
	stamp  uint64
	sweeps int
	seen   uint64 // the last sweep that saw the session
}

func newSessionKeeper(eng *relay.Engine, w *state.Writer, log *slog.Logger, mine func(instance string) bool) *sessionKeeper {
	return &sessionKeeper{eng: eng, w: w, log: log, mine: mine, stamps: map[string]written{}, changed: map[string]settling{}}
}

// restore re-creates the sessions a previous process saved. A record that
// cannot be restored (another format, a port now taken) is dropped: its
// call, if any, then finds no session and ends cleanly. Records a live
// peer's node saved (several all-in-one processes on one Redis) are not
// this process's: they are left alone (the peer's ports, maybe its
// host). A peer that dies while this process runs cannot have its media
// re-created here: whoever takes its calls over deletes its records
// (dropSessionsOf) and its calls end with a BYE on both legs. At start,
// records of an instance holding no lease are taken as a previous run's
// of this process (the default --instance-id changes with each run) and
// re-created if their ports are free here; give each all-in-one a fixed
// --instance-id so that a dead peer's never are.
func (k *sessionKeeper) restore(ctx context.Context) (restored int, err error) {
	recs, err := k.w.Store().Load(ctx, state.Sessions)
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, b := range recs {
		var sv relay.SavedSession
		if err := json.Unmarshal(b, &sv); err != nil || sv.ID != id {
			k.log.Warn("state: a saved dataplane session that does not decode is dropped", "session", id)
			k.w.Delete(state.Sessions, id)
			continue
		}
		if k.mine != nil && !k.mine(sv.Labels[dpool.LabelInstance]) {
			continue
		}
		s, err := k.eng.RestoreSession(&sv)
		if err != nil {
			k.log.Warn("state: dataplane session not re-created", "session", id, "err", err)
			k.w.Delete(state.Sessions, id)
			continue
		}
		k.stamps[id] = written{stamp: s.Stamp(), seen: k.gen, keyed: s.Keyed()}
		restored++
	}
	return restored, nil
}

// run sweeps every keepInterval until stop closes.
func (k *sessionKeeper) run(stop <-chan struct{}) {
	t := time.NewTicker(keepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			k.sweep(false)
		}
	}
}

// sweep writes the sessions whose stamp changed and settled (keepSettle),
// all of them when final, and deletes the records of sessions that ended.
func (k *sessionKeeper) sweep(final bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	k.gen++
	gen := k.gen
	for _, s := range k.eng.Sessions() {
		st := s.Stamp()
		w, ok := k.stamps[s.ID]
		if ok && w.stamp == st {
			k.stamps[s.ID] = written{stamp: st, seen: gen, keyed: w.keyed}
			delete(k.changed, s.ID)
			continue
		}
		if ok {
			// Its record stays until it is written again or ends.
			k.stamps[s.ID] = written{stamp: w.stamp, seen: gen, keyed: w.keyed}
		}
		keyed := s.Keyed()
		urgent := keyed > w.keyed // new SRTP keys: the record is useless without them
		if c, ok := k.changed[s.ID]; !final && !urgent && (!ok || (c.stamp != st && c.sweeps < keepSettle)) {
			k.changed[s.ID] = settling{stamp: st, sweeps: c.sweeps + 1, seen: gen}
			continue
		}
		delete(k.changed, s.ID)
		sv := s.Save()
		if sv == nil {
			// Deleted meanwhile: its record, if any, goes below.
			if ok {
				k.stamps[s.ID] = written{stamp: w.stamp, keyed: w.keyed}
			}
			continue
		}
		b, err := json.Marshal(sv)
		if err != nil {
			k.log.Error("[unexpected] saved dataplane session does not encode", "session", s.ID)
			continue
		}
		k.w.Put(state.Sessions, s.ID, b)
		k.stamps[s.ID] = written{stamp: st, seen: gen, keyed: keyed}
	}
	for id, w := range k.stamps {
		if w.seen != gen {
			k.w.Delete(state.Sessions, id)
			delete(k.stamps, id)
		}
	}
	for id, c := range k.changed {
		if c.seen != gen {
			delete(k.changed, id)
		}
	}
}

// rewrite forgets what was written (state.Writer.OnLost: the store lost
// its records), so that the next sweeps write every session again once
// its stamp holds still for a sweep. Called on the Writer's goroutine.
func (k *sessionKeeper) rewrite() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.stamps)
}

// finish makes the last sweep and stops writing: before the node stops for
// a handover (the records stay for the next process), or after it stopped
// on a shutdown (every session ended: their records go).
func (k *sessionKeeper) finish() {
	k.sweep(true)
	k.mu.Lock()
	k.done = true
	k.mu.Unlock()
}

// dropSessionsOf deletes the saved in-process sessions of the control
// plane dead, whose calls this process took over (an all-in-one peer's
// media cannot be re-created here: its calls end with BYE on both legs),
// but those in keep (re-created here at start, adopted by its calls).
func dropSessionsOf(ctx context.Context, w *state.Writer, dead string, keep map[string]bool) (int, error) {
	recs, err := w.Store().Load(ctx, state.Sessions)
	if err != nil {
		return 0, err
	}
	n := 0
	for id, b := range recs {
		var sv struct {
			Labels map[string]string `json:"labels"`
		}
		if json.Unmarshal(b, &sv) == nil && sv.Labels[dpool.LabelInstance] == dead && !keep[id] {
			w.Delete(state.Sessions, id)
			n++
		}
	}
	return n, nil
}

// dtlsCertName is the all-in-one's DTLS certificate in the store's
// secrets (PEM: certificate, then PKCS #8 key).
const dtlsCertName = "dtls-certificate"

// dtlsRenewBefore: a stored certificate this close to its end is replaced
// at start (browsers check only the fingerprint, but other peers may look
// at the dates); calls carried over keep their keys either way.
const dtlsRenewBefore = 7 * 24 * time.Hour

// dtlsCertificate is the in-process node's DTLS certificate, kept in the
// state store so that a restarted all-in-one has the same fingerprint:
// the SDP of a re-INVITE toward a browser whose call was carried over
// names the fingerprint its DTLS association was made with (a new one
// would ask for a new association, RFC 5763 section 5). The first
// process makes it; one from a store that does not answer is this
// process's own.
func (s *Server) dtlsCertificate() (tls.Certificate, error) {
	fresh := func() (tls.Certificate, []byte, error) {
		c, err := selfsign.GenerateSelfSigned()
		if err != nil {
			return c, nil, err
		}
		key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			return c, nil, err
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
		return c, append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...), nil
	}
	c, b, err := fresh()
	if err != nil {
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	defer cancel()
	st := s.State.Store()
	v, err := st.PutIfAbsent(ctx, state.Secrets, dtlsCertName, b)
	if err != nil {
		s.log.Warn("state store: DTLS certificate not read; using one of this process's (calls will not survive a restart)", "err", err)
		return c, nil
	}
	stored, err := tls.X509KeyPair(v, v)
	if err == nil {
		var x *x509.Certificate
		if x, err = x509.ParseCertificate(stored.Certificate[0]); err == nil && time.Until(x.NotAfter) > dtlsRenewBefore {
			s.keepSecret(dtlsCertName, v)
			return stored, nil
		}
	}
	// Unreadable or ending soon: this process's replaces it.
	if err := st.Apply(ctx, []state.Change{{Kind: state.Secrets, Key: dtlsCertName, Value: b}}); err != nil {
		s.log.Warn("state store: DTLS certificate not replaced", "err", err)
	}
	s.keepSecret(dtlsCertName, b)
	return c, nil
}

package b2bua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/state"
)

// What an answered call leaves in the state store, so that a control plane
// started after this one (a restart, a crash, an upgrade) carries it on:
// both dialogs as RFC 3261 section 12 defines them, what was negotiated on
// each leg, and the dataplane session. Only answered calls are kept: a
// call still ringing when the process dies cannot be finished (its INVITE
// transactions died with it); its dataplane session is reaped and its
// accounting is the CDR journal's.
//
// The record is written by the call's loop after every step that changed
// the call (answer, re-INVITE, UPDATE), through the state Writer (batched,
// never per packet), compared with the last one written so that a step
// that changed nothing costs nothing, and deleted when the call ends.

// callRecordVersion is the record format; a record of another version is
// not restored (its call ends as the old process left it).
const callRecordVersion = 1

// cseqMargin is added to our CSeq when a dialog is restored: requests
// relayed after the last write (INFO, NOTIFY) raised it, and RFC 3261
// section 12.2.1.1 only asks that it increase, not that it be
// contiguous.
const cseqMargin = 1000

type callRecord struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// Owner is the instance id of the control plane that carries the
	// call on (Config.Instance); empty in records written before
	// ownership existed (restored by whichever process starts).
	Owner     string       `json:"owner,omitempty"`
	Caller    string       `json:"caller"`
	Callee    string       `json:"callee"`
	Direction string       `json:"direction"`
	API       bool         `json:"api,omitempty"`
	Slot      bool         `json:"slot,omitempty"` // holds a --max-calls-per-user slot of the caller's
	Start     time.Time    `json:"start"`
	Answer    time.Time    `json:"answer"`
	Session   string       `json:"session,omitempty"`
	Node      string       `json:"node,omitempty"`
	Legs      []*legRecord `json:"legs"`
}

type legRecord struct {
	Kind   legKind         `json:"kind"`
	Info   bool            `json:"info,omitempty"`
	Dialog *dialogRecord   `json:"dialog,omitempty"`
	Media  *mediaLegRecord `json:"media,omitempty"`
	Timer  *timerRecord    `json:"timer,omitempty"`
}

// timerRecord is a leg's session timer (RFC 4028) as negotiated; its
// clock starts again when the call is restored (a refresh is due half an
// interval later, or the peer's within the interval).
type timerRecord struct {
	Secs   uint32 `json:"secs,omitempty"`
	Strait bool   `json:"strait,omitempty"`
	Update bool   `json:"update,omitempty"`
}

type dialogRecord struct {
	CallID    string   `json:"call_id"`
	LocalTag  string   `json:"local_tag"`
	LocalName string   `json:"local_name,omitempty"`
	RemoteTag string   `json:"remote_tag"`
	Flow      string   `json:"flow,omitempty"`
	UAS       bool     `json:"uas,omitempty"`
	Contact   string   `json:"contact"`
	Local     string   `json:"local"`
	Remote    string   `json:"remote"`
	Target    string   `json:"target"`
	Transport string   `json:"transport"`
	Dest      string   `json:"dest,omitempty"`
	Upstream  string   `json:"upstream,omitempty"` // the target's Key
	Routes    []string `json:"routes,omitempty"`
	CSeq      uint32   `json:"cseq"`
	RCSeq     uint32   `json:"rcseq"`
}

type mediaLegRecord struct {
	Origin     sdp.Origin       `json:"origin"`
	Remote     *sdp.Description `json:"remote,omitempty"`
	Role       sdp.DTLSRole     `json:"role"`
	Codecs     [][]sdp.Codec    `json:"codecs"`
	Dirs       []sdp.Direction  `json:"dirs"`
	SDESSuite  []string         `json:"sdes_suite,omitempty"`
	SDESLocal  [][]byte         `json:"sdes_local,omitempty"`
	SDESRemote [][]byte         `json:"sdes_remote,omitempty"`
	SigIP      string           `json:"sig_ip,omitempty"`
}

// snapshot describes the dialog for the store (under its lock).
func (d *dialog) snapshot() *dialogRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &dialogRecord{CallID: d.callID, LocalTag: d.localTag, LocalName: d.localName, RemoteTag: d.remoteTag,
		Flow: d.flow, UAS: d.uas, Contact: d.contact, Local: d.local.String(), Remote: d.remote.String(),
		Target: d.target.String(), Transport: d.transport, Dest: d.dest, Routes: d.routes, CSeq: d.cseq, RCSeq: d.rcseq}
	if d.up != nil {
		r.Upstream = d.up.Key()
	}
	return r
}

func (l *mediaLeg) snapshot() *mediaLegRecord {
	r := &mediaLegRecord{Origin: l.origin, Remote: l.remote, Role: l.role, Codecs: l.codecs, Dirs: l.dirs,
		SDESSuite: l.sdesSuite, SDESLocal: l.sdesLocal, SDESRemote: l.sdesRemote}
	if l.sigIP.IsValid() {
		r.SigIP = l.sigIP.String()
	}
	return r
}

// record describes an answered call for the store. Loop only.
func (c *Call) stateRecord() *callRecord {
	r := &callRecord{V: callRecordVersion, ID: c.ID, Owner: c.e.cfg.Instance, Caller: c.caller, Callee: c.callee,
		Direction: c.direction, API: c.api, Slot: c.slot, Start: c.start, Answer: c.answer}
	if c.m != nil {
		r.Session = c.m.sessionID()
		r.Node = c.e.cfg.Pool.NodeOf(r.Session)
	}
	for i, l := range c.legs {
		if l == nil {
			break
		}
		lr := &legRecord{Kind: l.kind, Info: l.info.Load()}
		if secs, strait, update := l.timer.snapshot(); secs > 0 || update {
			lr.Timer = &timerRecord{Secs: secs, Strait: strait, Update: update}
		}
		if l.d != nil {
			lr.Dialog = l.d.snapshot()
		}
		if c.m != nil && i < len(c.m.legs) {
			lr.Media = c.m.legs[i].snapshot()
		}
		r.Legs = append(r.Legs, lr)
	}
	return r
}

// persist writes the call through to the state store if it is answered
// and changed since the last write. Loop only.
func (c *Call) persist() {
	w := c.e.cfg.State
	if w == nil || c.sub || c.state != StateAnswered {
		return
	}
	b, err := json.Marshal(c.stateRecord())
	if err != nil {
		c.log.Error("[unexpected] call record does not encode", "err", err)
		return
	}
	c.savedMu.Lock()
	defer c.savedMu.Unlock()
	if string(b) == string(c.saved) {
		return
	}
	c.saved = b
	w.Put(state.Calls, c.ID, b)
}

// forget removes the call from the state store once it ended. Loop only.
func (c *Call) forget() {
	c.savedMu.Lock()
	defer c.savedMu.Unlock()
	if c.saved != nil && c.e.cfg.State != nil {
		c.e.cfg.State.Delete(state.Calls, c.ID)
		c.saved = nil
	}
}

// FencedDrops counts the in-dialog requests dropped while this control
// plane did not own its calls (Config.Owning).
func (e *Engine) FencedDrops() uint64 { return e.fencedDrops.Load() }

// Disown drops the answered calls a peer took over while this control
// plane was cut off from the state store (cluster.Config.OnRegained):
// each is forgotten here with no BYE, no CDR, its dataplane session and
// its record left to the owner. It returns the calls dropped, once their
// loops have let go.
func (e *Engine) Disown(ids []string) int {
	var calls []*Call
	for _, id := range ids {
		if c, ok := e.Call(id); ok {
			c.disownStop()
			calls = append(calls, c)
		}
	}
	waitCalls(calls, time.Now().Add(e.cfg.ShutdownTimeout))
	if w := e.cfg.State; w != nil {
		// What this process queued for them and could not write while
		// it was cut off would overwrite the owner's records.
		for _, c := range calls {
			w.Discard(state.Calls, c.ID)
		}
	}
	return len(calls)
}

// Owned sorts this process's answered calls by what the state store
// says of them now (after a cut-off longer than the lease): owned are
// those whose record names this control plane, or has none while the
// control plane was not taken over (taken reports it; a call answered
// just before the cut-off may not have been written yet); the others a
// peer took over (its record names the peer) or took over and ended (no
// record left).
func (e *Engine) Owned(ctx context.Context, taken bool) (owned, elsewhere []string, err error) {
	stored, err := e.StoredCalls(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range e.snapshot() {
		c.savedMu.Lock()
		written := c.saved != nil
		c.savedMu.Unlock()
		if !written {
			continue // not answered: not in the store
		}
		r, ok := stored[c.ID]
		if (ok && (r.Owner == e.cfg.Instance || r.Owner == "")) || (!ok && !taken) {
			owned = append(owned, c.ID)
		} else {
			elsewhere = append(elsewhere, c.ID)
		}
	}
	return owned, elsewhere, nil
}

// RewriteState queues again the record of every call in the state store
// (state.Writer.OnLost: the store lost its records, e.g. a Redis that
// restarted without persistence), so that a restarted or surviving
// control plane still finds them.
func (e *Engine) RewriteState() {
	w := e.cfg.State
	if w == nil {
		return
	}
	for _, c := range e.snapshot() {
		c.savedMu.Lock()
		if c.saved != nil {
			w.Put(state.Calls, c.ID, c.saved)
		}
		c.savedMu.Unlock()
	}
}

// Restore carries on the calls a previous control plane left in the state
// store: each call's dialogs and media are rebuilt, its dataplane session
// is adopted from the node that holds it, and its loop starts (in-dialog
// requests, hang-ups, re-INVITEs and the media timeout work as before). A
// call whose session its node no longer holds (the node restarted, or the
// all-in-one's in-process node went with the old process) is ended at
// once: BYE on both legs and a CDR. It returns the adopted session ids
// (everything else Strait owns on the nodes is an orphan). Call it before
// the SIP stack starts; calls it must end wait for Ready.
//
// Only the records whose owner mine accepts are restored (several control
// planes share a Redis store: a process carries on its own calls and
// those of a dead peer it claimed, never a live peer's; see package
// cluster); nil accepts every record. A call whose owner was another
// process is taken over (see takeOver).
func (e *Engine) Restore(ctx context.Context, mine func(owner string) bool) (Restored, error) {
	out := Restored{Calls: map[string]bool{}, Sessions: map[string]bool{}}
	if e.cfg.State == nil {
		return out, nil
	}
	recs, err := e.cfg.State.Store().Load(ctx, state.Calls)
	if err != nil {
		return out, fmt.Errorf("state: loading calls: %w", err)
	}
	for id, b := range recs {
		var r callRecord
		if err := json.Unmarshal(b, &r); err != nil || r.V != callRecordVersion || r.ID != id {
			e.log.Warn("state: a call record that does not decode is dropped", "call", id, "err", err)
			e.cfg.State.Delete(state.Calls, id)
			continue
		}
		if mine != nil && !mine(r.Owner) {
			continue
		}
		if _, ok := e.Call(id); ok {
			continue // carried on already (a takeover tried again)
		}
		c, err := e.restoreCall(ctx, &r, b, mine != nil && r.Owner != e.cfg.Instance)
		if err != nil {
			e.log.Warn("state: call not restored", "call", id, "err", err)
			e.cfg.State.Delete(state.Calls, id)
			continue
		}
		out.Calls[c.ID] = true
		if c.m.sess != nil {
			out.Sessions[c.m.sessionID()] = true
		}
	}
	return out, nil
}

// Restored names what Restore carried on: call ids, and the dataplane
// sessions adopted for them.
type Restored struct {
	Calls, Sessions map[string]bool
}

// reasonMediaLost ends a restored call whose dataplane session is gone.
const reasonMediaLost = "media lost in restart"

// ReasonMediaLostWithOwner ends a call taken over from a dead control
// plane whose dataplane session is gone: an all-in-one's in-process
// media dies with it (package cluster).
const ReasonMediaLostWithOwner = "media lost with its control plane"

// restoreCall rebuilds one call and starts its loop.
// takeover says the record's owner was another control plane (see
// takeOver).
func (e *Engine) restoreCall(ctx context.Context, r *callRecord, saved []byte, takeover bool) (*Call, error) {
	if len(r.Legs) == 0 || len(r.Legs) > 2 {
		return nil, errors.New("a call has one or two legs")
	}
	c := e.newCall(r.Caller, r.Callee)
	c.ID, c.start, c.answer, c.direction, c.api = r.ID, r.Start, r.Answer, r.Direction, r.API
	c.log = e.log.With("call", c.ID, "caller", c.caller, "callee", c.callee)
	var mls []*mediaLeg
	for i, lr := range r.Legs {
		l := &leg{c: c, idx: i, kind: lr.Kind, acks: make(chan *sip.Request, 4)}
		l.info.Store(lr.Info)
		if tr := lr.Timer; tr != nil {
			if tr.Update {
				l.timer.allowUpdate()
			}
			l.timer.set(tr.Secs, tr.Strait)
		}
		if lr.Dialog != nil {
			d, err := e.restoreDialog(lr.Dialog)
			if err != nil {
				return nil, fmt.Errorf("leg %d: %w", i, err)
			}
			l.d = d
		}
		c.legs[i] = l
		if lr.Media == nil {
			return nil, fmt.Errorf("leg %d has no media", i)
		}
		ml := c.mediaLeg(l)
		m := lr.Media
		ml.origin, ml.remote, ml.role, ml.codecs, ml.dirs = m.Origin, m.Remote, m.Role, m.Codecs, m.Dirs
		ml.sdesSuite, ml.sdesLocal, ml.sdesRemote = m.SDESSuite, m.SDESLocal, m.SDESRemote
		if a, err := netip.ParseAddr(m.SigIP); err == nil {
			ml.sigIP = a
		}
		ml.grow(len(ml.codecs))
		mls = append(mls, ml)
	}
	c.m = newMedia(e.cfg.Pool, c.ID, e.cfg.MediaTimeout, mls...)
	lost := ""
	if r.Session != "" {
		s, err := e.cfg.Pool.Adopt(ctx, r.Session, r.Node, map[string]string{dpool.LabelCall: c.ID})
		switch {
		case err == nil:
			c.m.sess = s
		case errors.Is(err, dpool.ErrSessionGone) && takeover:
			lost = ReasonMediaLostWithOwner
		case errors.Is(err, dpool.ErrSessionGone):
			lost = reasonMediaLost
		default:
			return nil, err
		}
	}
	c.state = StateAnswered
	c.saved = saved
	c.publish()
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil, errors.New("shutting down")
	}
	e.calls[c.ID] = c
	e.mu.Unlock()
	e.cfg.Metrics.CallState("", StateAnswered.String())
	if r.Slot && e.cfg.Guard != nil {
		// The call counts toward its caller's --max-calls-per-user as it
		// did before the restart (Hold: it is up, never refused).
		c.release, c.slot = e.cfg.Guard.Hold(r.Caller), true
	}
	for _, l := range c.legs {
		if l != nil && l.d != nil {
			e.addDialog(l)
		}
	}
	if takeover {
		e.takeOver(c)
	}
	c.log.Info("call carried on from the state store", "session", r.Session, "node", r.Node, "media_lost", lost != "",
		"owner", r.Owner, "takeover", takeover)
	go c.run(func() {
		if lost == "" {
			return
		}
		select {
		case <-e.ready:
		case <-c.stopping:
			return
		}
		c.log.Warn("the call's dataplane session is gone; ending it", "session", r.Session)
		c.stop(503, lost, nil)
	})
	return c, nil
}

// restoreDialog rebuilds a dialog from its record. Our CSeq goes up by
// cseqMargin (see there).
func (e *Engine) restoreDialog(r *dialogRecord) (*dialog, error) {
	d := &dialog{st: e.st, callID: r.CallID, localTag: r.LocalTag, localName: r.LocalName, flow: r.Flow, uas: r.UAS,
		contact: r.Contact, transport: r.Transport, dest: r.Dest, remoteTag: r.RemoteTag, routes: r.Routes,
		cseq: r.CSeq + cseqMargin, rcseq: r.RCSeq, fixed: true}
	for _, u := range []struct {
		s   string
		dst *sip.Uri
	}{{r.Local, &d.local}, {r.Remote, &d.remote}, {r.Target, &d.target}} {
		if err := sip.ParseUri(u.s, u.dst); err != nil {
			return nil, fmt.Errorf("dialog URI %q: %w", u.s, err)
		}
	}
	if r.Upstream != "" && e.cfg.Upstreams != nil {
		for _, t := range e.cfg.Upstreams.All() {
			if t.Key() == r.Upstream {
				t := t
				d.up = &t
				break
			}
		}
		// A target DNS no longer gives: the dialog keeps its dest.
	}
	return d, nil
}

// Ready tells restored calls that the SIP stack runs: those whose media
// is gone may send their BYEs now.
func (e *Engine) Ready() {
	e.readyOnce.Do(func() { close(e.ready) })
}

// Package history keeps each user's call history, the call log a phone
// shows: the newest PerUser calls a user was on, in the state store
// (--state: the embedded file by default, Redis when the control planes
// share one), so that it survives a restart and every control plane sees
// it. It is fed from the call records (cdr.Store.Notify) and read by the
// HTTP API's GET /v1/history.
//
// Only Strait's own users get a history: the browser or API side of a
// call (authenticated by Strait or by the PBX it registers to) and, in
// standalone mode, the configured users. A SIP caller's From is whatever
// the caller wrote, and keeping a history for each would let anyone grow
// the store by calling with made-up names.
package history

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/state"
)

// Kind is the state store's kind for histories: one record per user
// (key: the user), a JSON array of Entries, newest first.
const Kind state.Kind = "history"

// PerUser bounds one user's history: older calls drop out (they remain
// in --cdr-file). 200 entries of about 250 bytes keep one write per call
// end near 50 KB.
const PerUser = 200

// queueLen bounds the records waiting to be written; past it a record
// is counted in Dropped rather than blocking the hangup that made it.
const queueLen = 4096

// opTimeout bounds one store operation.
const opTimeout = 5 * time.Second

// Entry is one call in a user's history.
type Entry struct {
	ID        string     `json:"id"`
	Caller    string     `json:"caller"`
	Callee    string     `json:"callee"`
	Direction string     `json:"direction"`
	Start     time.Time  `json:"start"`
	Answer    *time.Time `json:"answer,omitempty"`
	End       time.Time  `json:"end"`
	Duration  float64    `json:"duration_s"`
	Cause     int        `json:"cause"`
	Reason    string     `json:"reason"`
}

// FromRecord is the history entry of a call record (without its media
// counters: the call log does not show them).
func FromRecord(r cdr.Record) Entry {
	return Entry{ID: r.ID, Caller: r.Caller, Callee: r.Callee, Direction: r.Direction, Start: r.Start,
		Answer: r.Answer, End: r.End, Duration: r.Duration, Cause: r.Cause, Reason: r.Reason}
}

// newer orders entries newest first: by end, then by id.
func newer(a, b Entry) int {
	if c := b.End.Compare(a.End); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// Store is where a Log keeps histories: the control plane's state Writer
// ([state.Writer]), so that they go in its transactions with the calls',
// registrations' and sessions' records (on the embedded store one commit,
// one pair of fsyncs, for all of them) and a read builds on this process's
// last write even before the store has it.
type Store interface {
	// Get reads a record as this process last wrote it.
	Get(ctx context.Context, kind state.Kind, key string) ([]byte, bool, error)
	// Put queues a record's new value (the Store now owns it).
	Put(kind state.Kind, key string, value []byte)
}

var _ Store = (*state.Writer)(nil)

// Config configures a Log.
type Config struct {
	// Store keeps the histories. Required.
	Store Store
	// Users, when set, reports whether a name is one of Strait's own
	// users (standalone --user): such a user gets the call on any side.
	Users func(name string) bool
	// PerUser bounds each history (0: PerUser).
	PerUser int
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
	// Gather is how long the writer gathers records before a write (0:
	// Gather; negative: it writes what is queued at once).
	Gather time.Duration
}

// Log writes and reads users' histories. Add never blocks: one goroutine
// writes. It is safe for concurrent use.
type Log struct {
	cfg     Config          // frozen
	in      chan cdr.Record // to the writer goroutine
	queued  atomic.Int64    // records added and not yet written (or dropped)
	flush   chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
	writes  atomic.Uint64 // merges of gathered records (tests)
	// last is what the previous write left in each of its users'
	// histories (at most lastUsers), so that the next write for a user
	// whose calls keep ending (a trunk, an API client) neither reads
	// the record back nor decodes it (see knownStore). Owned by run.
	last map[string]written
	// reused counts the writes that found the history as last written
	// (tests).
	reused atomic.Uint64
}

// written is a history as this process last wrote it: its encoding and
// its entries (never modified: a merge works on a copy).
type written struct {
	raw  []byte
	list []Entry
}

// lastUsers bounds Log.last: the busiest users are the ones whose
// histories are written at every Gather (a user of the previous write is
// likely in the next); each costs up to PerUser entries twice (encoded
// and decoded), about 100 kB.
const lastUsers = 32

// knownStore is a Store that can tell that a record is still the one the
// caller holds without sending it back ([state.Writer.GetKnown]).
type knownStore interface {
	GetKnown(ctx context.Context, kind state.Kind, key string, known []byte) (value []byte, ok, unchanged bool, err error)
}

// New starts a Log; Close stops it.
func New(cfg Config) *Log {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PerUser <= 0 {
		cfg.PerUser = PerUser
	}
	if cfg.Gather == 0 {
		cfg.Gather = Gather
	}
	l := &Log{cfg: cfg, in: make(chan cdr.Record, queueLen), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// Owners returns whose history a record goes in: the users among its
// sides that are Strait's own (see the package comment), each once.
func (l *Log) Owners(r cdr.Record) []string {
	var out []string
	add := func(u string) {
		if u != "" && u != "api" && u != "echo" && len(u) <= 128 && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	from, to, _ := strings.Cut(r.Direction, "-to-")
	if from == "browser" || r.Direction == "api" || r.Direction == "echo" {
		add(r.Caller)
	}
	if to == "browser" {
		add(r.Callee)
	}
	if l.cfg.Users != nil {
		for _, u := range []string{r.Caller, r.Callee} {
			if l.cfg.Users(u) {
				add(u)
			}
		}
	}
	return out
}

// Add queues a call record for its owners' histories.
func (l *Log) Add(r cdr.Record) {
	l.queued.Add(1)
	select {
	case l.in <- r:
	default:
		l.queued.Add(-1)
		l.dropped.Add(1)
		l.cfg.Log.Warn("call history: queue full, record dropped", "call", r.ID)
	}
}

// Dropped counts the records that did not reach a history (queue full, or
// the user's history could not be read).
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Flush waits until every record queued before it is written (or ctx
// ends).
func (l *Log) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case l.flush <- ch:
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the Log.
func (l *Log) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// maxBatch bounds the records one store write takes in.
const maxBatch = 512

// Gather is how long the writer waits after a record for the next ones
// before it writes them together (Config.Gather's default). A user's
// history is one record in the store, read, decoded, re-encoded and
// written whole for each write: a write per call at even 300 calls/s of
// one user (a trunk, an API client) was a third of what strait
// allocated, and at 50 ms still a tenth of its CPU. Page flushes first,
// so GET /v1/history still shows every call that ended before it on this
// control plane (another one sees it at most Gather later).
const Gather = 200 * time.Millisecond

func (l *Log) run() {
	defer close(l.done)
	batch := make([]cdr.Record, 0, maxBatch)
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for {
		select {
		case r := <-l.in:
			batch = append(batch[:0], r)
		case ch := <-l.flush:
			l.drain(batch)
			close(ch)
			continue
		case <-l.stop:
			l.drain(batch)
			return
		}
		if l.cfg.Gather > 0 {
			wait.Reset(l.cfg.Gather)
		}
	gather:
		for l.cfg.Gather > 0 && len(batch) < maxBatch {
			select {
			case r := <-l.in:
				batch = append(batch, r)
			case <-wait.C:
				break gather
			case ch := <-l.flush:
				wait.Stop()
				l.write(l.collect(batch))
				l.drain(batch)
				close(ch)
				batch = batch[:0]
				break gather
			case <-l.stop:
				wait.Stop()
				l.write(l.collect(batch))
				l.drain(batch)
				return
			}
		}
		wait.Stop()
		if len(batch) > 0 {
			l.write(l.collect(batch))
		}
	}
}

// collect adds to batch what is queued, up to maxBatch records: at a high
// call rate the records that ended while the last write was in progress
// are written together, each user's history read and written once for
// all of them (a write per record re-encoded the whole history for each
// call: a fifth of the control plane's CPU at 1 000 calls/s).
func (l *Log) collect(batch []cdr.Record) []cdr.Record {
	for len(batch) < maxBatch {
		select {
		case r := <-l.in:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (l *Log) drain(batch []cdr.Record) {
	for {
		b := l.collect(batch[:0])
		if len(b) == 0 {
			return
		}
		l.write(b)
	}
}

// write adds the records to each owner's history, each user's record
// read, merged and queued once for all of them. This goroutine is the only
// writer of this process; two control planes that end calls of one user
// at the same instant may lose one of them (last write wins).
func (l *Log) write(recs []cdr.Record) {
	defer l.queued.Add(-int64(len(recs)))
	l.writes.Add(1)
	var users []string
	byUser := map[string][]Entry{}
	for _, r := range recs {
		e := FromRecord(r)
		for _, u := range l.Owners(r) {
			if _, ok := byUser[u]; !ok {
				users = append(users, u)
			}
			byUser[u] = append(byUser[u], e)
		}
	}
	if len(users) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	next := make(map[string]written, min(len(users), lastUsers))
	for _, u := range users {
		b, list, err := l.merged(ctx, u, byUser[u])
		if err != nil {
			l.dropped.Add(uint64(len(byUser[u])))
			l.cfg.Log.Warn("call history not written", "user", u, "calls", len(byUser[u]), "err", err)
			continue
		}
		l.cfg.Store.Put(Kind, u, b)
		if len(next) < lastUsers {
			next[u] = written{raw: b, list: list}
		}
	}
	l.last = next
}

// merged is user's stored history with es added (an entry already there,
// a recovered call's record written twice, is replaced), newest first and
// bounded: encoded, and its entries. Run only.
func (l *Log) merged(ctx context.Context, user string, es []Entry) ([]byte, []Entry, error) {
	list, err := l.loadForWrite(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	ids := make(map[string]bool, len(es))
	for _, e := range es {
		ids[e.ID] = true
	}
	list = slices.DeleteFunc(list, func(o Entry) bool { return ids[o.ID] })
	for i := len(es) - 1; i >= 0; i-- { // the last of one id's records wins
		if ids[es[i].ID] {
			list = append(list, es[i])
			delete(ids, es[i].ID)
		}
	}
	slices.SortFunc(list, newer)
	list = list[:min(len(list), l.cfg.PerUser)]
	b, err := json.Marshal(list)
	return b, list, err
}

// loadForWrite is user's history as load reads it, to be modified: when
// the store still holds what the previous write left (Log.last), a copy
// of those entries, neither read back nor decoded. Run only.
func (l *Log) loadForWrite(ctx context.Context, user string) ([]Entry, error) {
	last, held := l.last[user]
	ks, can := l.cfg.Store.(knownStore)
	if !held || !can {
		return l.load(ctx, user)
	}
	b, ok, unchanged, err := ks.GetKnown(ctx, Kind, user, last.raw)
	switch {
	case err != nil || !ok:
		return nil, err
	case unchanged:
		l.reused.Add(1)
		return slices.Clone(last.list), nil
	}
	return l.decode(user, b), nil
}

func (l *Log) load(ctx context.Context, user string) ([]Entry, error) {
	b, ok, err := l.cfg.Store.Get(ctx, Kind, user)
	if err != nil || !ok {
		return nil, err
	}
	return l.decode(user, b), nil
}

// decode is a stored history's entries.
func (l *Log) decode(user string, b []byte) []Entry {
	var list []Entry
	if err := json.Unmarshal(b, &list); err != nil {
		// A damaged record is started afresh rather than blocking the
		// user's history for good.
		l.cfg.Log.Warn("call history unreadable, started afresh", "user", user, "err", err)
		return nil
	}
	return list
}

// Cursor marks a place in a history: the entries older than it. Its text
// form ("END_UNIX_NANOS.ID") is what GET /v1/history calls next/before.
type Cursor struct {
	End time.Time
	ID  string
}

// String is the cursor's text form.
func (c Cursor) String() string { return strconv.FormatInt(c.End.UnixNano(), 10) + "." + c.ID }

// ParseCursor parses a cursor's text form.
func ParseCursor(s string) (Cursor, error) {
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || n < 0 || id == "" || len(s) > 128 {
		return Cursor{}, fmt.Errorf("cursor %q: want the next of a previous page", s)
	}
	return Cursor{End: time.Unix(0, n), ID: id}, nil
}

// Page returns up to limit entries of user's history older than before
// (nil: from the newest), newest first, and the cursor of the next page
// (nil when there is none).
func (l *Log) Page(ctx context.Context, user string, before *Cursor, limit int) ([]Entry, *Cursor, error) {
	if l.queued.Load() > 0 {
		// Calls that ended before this read are in it (see Gather).
		if err := l.Flush(ctx); err != nil {
			return nil, nil, err
		}
	}
	list, err := l.load(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	if before != nil {
		mark := Entry{End: before.End, ID: before.ID}
		i, _ := slices.BinarySearchFunc(list, mark, newer)
		for i < len(list) && newer(list[i], mark) <= 0 {
			i++
		}
		list = list[i:]
	}
	if len(list) <= limit {
		return list, nil, nil
	}
	last := list[limit-1]
	return list[:limit], &Cursor{End: last.End, ID: last.ID}, nil
}

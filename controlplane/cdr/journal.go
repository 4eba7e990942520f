package cdr

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Journal keeps the accounting of calls in progress where a crash of the
// control plane cannot take it: a call's start at once, its answer and
// media counters at each interim, its end. After a crash, [Journal.Open]
// lists the calls that started and never ended, with what was known of
// them last, so that each still gets a record ([Recover]).
//
// FileJournal is the embedded implementation; a shared state store (issue
// 11) may implement Journal too, and adopt such calls instead of closing
// them. Implementations are safe for concurrent use.
type Journal interface {
	// Open returns the calls a previous process left open (started, not
	// ended), each as the Record known at its last interim: End is the
	// time of that interim. They stay open until End. Call it once,
	// before Start.
	Open() ([]Record, error)
	// Start records a call that began.
	Start(r Record) error
	// Interim records what is known of a call now: its answer time,
	// direction, node and media counters. An interim with an answer is
	// durable at once (it changes the bill); others wait for Flush.
	Interim(id string, in Interim) error
	// End records that a call ended (its CDR is written).
	End(id string) error
	// Flush makes every interim durable.
	Flush() error
	// Close flushes and closes.
	Close() error
}

// Interim is what an interim update knows of a call.
type Interim struct {
	// Answer is when it was answered (nil: not yet).
	Answer *time.Time
	// Direction, Node and Media as in Record (empty: unchanged).
	Direction, Node string
	Media           []LegMedia
	// At is when this was true.
	At time.Time
}

// FileJournal is a Journal in one file: the calls in progress as JSON
// lines, rewritten whole (to a temporary file renamed over it, fsynced) at
// each Flush, with starts, answers and ends appended as they happen in
// between (the last line of a call is what counts).
// Its size is bounded by the calls in progress, whatever the uptime.
type FileJournal struct {
	path string // frozen

	mu   sync.Mutex // guards the fields below; held across file writes, never network I/O
	open map[string]*Record
	f    *os.File
}

// journalLine is one line of the file.
type journalLine struct {
	// Op is "call" (the state of a call in progress: a start, or the
	// snapshot of a Flush) or "end".
	Op string  `json:"op"`
	ID string  `json:"id"`
	R  *Record `json:"r,omitempty"`
}

// OpenFileJournal opens (creating) the journal at path.
func OpenFileJournal(path string) (*FileJournal, error) {
	j := &FileJournal{path: path, open: map[string]*Record{}}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cdr journal: %w", err)
	}
	j.f = f
	return j, nil
}

// Open reads the calls a previous process left open and compacts the file
// to them (the caller closes them with Recover).
func (j *FileJournal) Open() ([]Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	left := map[string]*Record{}
	sc := bufio.NewScanner(j.f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l journalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue // a line cut short by the crash
		}
		switch l.Op {
		case "call":
			if l.R != nil {
				left[l.ID] = l.R
			}
		case "end":
			delete(left, l.ID)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cdr journal %s: %w", j.path, err)
	}
	out := make([]Record, 0, len(left))
	for id, r := range left {
		out = append(out, *r)
		j.open[id] = r
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Start.Before(out[b].Start) })
	return out, j.rewrite()
}

// Start appends the call's start.
func (j *FileJournal) Start(r Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if r.End.IsZero() {
		r.End = r.Start
	}
	j.open[r.ID] = &r
	return j.append(journalLine{Op: "call", ID: r.ID, R: &r})
}

// Interim updates the call in memory; Flush writes it, or at once (an
// appended line) when it carries the answer.
func (j *FileJournal) Interim(id string, in Interim) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.open[id]
	if r == nil {
		return nil
	}
	if in.Answer != nil {
		t := *in.Answer
		r.Answer = &t
	}
	if in.Direction != "" {
		r.Direction = in.Direction
	}
	if in.Node != "" {
		r.Node = in.Node
	}
	if in.Media != nil {
		r.Media = append([]LegMedia(nil), in.Media...)
	}
	if !in.At.IsZero() {
		r.End = in.At
	}
	if in.Answer != nil {
		return j.append(journalLine{Op: "call", ID: id, R: r})
	}
	return nil
}

// End appends the call's end.
func (j *FileJournal) End(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.open[id]; !ok {
		return nil
	}
	delete(j.open, id)
	return j.append(journalLine{Op: "end", ID: id})
}

// Flush rewrites the file with the calls in progress as they are now.
func (j *FileJournal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rewrite()
}

// Close flushes and closes the file.
func (j *FileJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.rewrite()
	err = errors.Join(err, j.f.Close())
	j.f = nil
	return err
}

func (j *FileJournal) append(l journalLine) error {
	if j.f == nil {
		return errors.New("cdr journal: closed")
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = j.f.Write(append(b, '\n'))
	return err
}

// rewrite replaces the file with one line per call in progress. j.mu held.
func (j *FileJournal) rewrite() error {
	if j.f == nil {
		return errors.New("cdr journal: closed")
	}
	tmp, err := os.CreateTemp(filepath.Dir(j.path), filepath.Base(j.path)+".*")
	if err != nil {
		return fmt.Errorf("cdr journal: %w", err)
	}
	w := bufio.NewWriter(tmp)
	for id, r := range j.open {
		b, _ := json.Marshal(journalLine{Op: "call", ID: id, R: r})
		w.Write(append(b, '\n'))
	}
	err = errors.Join(w.Flush(), tmp.Sync(), tmp.Chmod(0o640), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), j.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cdr journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("cdr journal: %w", err)
	}
	j.f.Close()
	j.f = f
	return nil
}

// Recover closes the calls a journal left open: each gets a record ended
// at its last interim (its media as counted then, or final counters from
// final when the dataplane still had the session), with cause 500 and
// reason, marked Recovered, written to store. It returns how many.
func Recover(j Journal, store *Store, reason string, final func(r Record) []LegMedia) (int, error) {
	return RecoverExcept(j, store, reason, nil, final)
}

// RecoverExcept is Recover for the calls a journal left open that are not
// carried on (carriedOn reports the calls a restarted control plane took
// over from the state store: they stay open in the journal, and their own
// end closes them).
func RecoverExcept(j Journal, store *Store, reason string, carriedOn func(id string) bool, final func(r Record) []LegMedia) (int, error) {
	left, err := j.Open()
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, r := range left {
		if carriedOn != nil && carriedOn(r.ID) {
			continue
		}
		n++
		if final != nil {
			if m := final(r); m != nil {
				r.Media, r.End = m, time.Now()
			}
		}
		r.Cause, r.Reason, r.Recovered = 500, reason, true
		r.Duration = 0
		if r.Answer != nil && r.End.After(*r.Answer) {
			r.Duration = r.End.Sub(*r.Answer).Seconds()
		}
		if err := store.Add(r); err != nil {
			errs = append(errs, err)
			continue // left open: the next start tries again
		}
		if err := j.End(r.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Package cdr keeps call detail records: one [Record] per ended call, held
// in memory for the API (GET /v1/cdrs) and appended as a JSON line to a file
// when one is configured.
package cdr

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Record is one ended call.
type Record struct {
	// ID is the call id (the API's id, never a SIP Call-ID).
	ID string `json:"id"`
	// Caller and Callee are the user parts (or "api") of each side.
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// Direction is "browser-to-sip", "sip-to-browser", "browser-to-browser",
	// "api", "echo" or "sip-to-sip".
	Direction string `json:"direction"`
	// Start is when the call arrived, Answer when it was answered (zero
	// when never), End when it ended.
	Start  time.Time  `json:"start"`
	Answer *time.Time `json:"answer,omitempty"`
	End    time.Time  `json:"end"`
	// Duration is End - Answer in seconds (0 when unanswered).
	Duration float64 `json:"duration_s"`
	// Cause is the SIP status that ended the call (200 for a normal hang
	// up) and Reason says who or what ended it ("caller bye", "callee
	// bye", "cancel", "media timeout", "busy", ...).
	Cause  int    `json:"cause"`
	Reason string `json:"reason"`
	// Media are the dataplane's final counters of each leg.
	Media []LegMedia `json:"media,omitempty"`
	// Node is the dataplane node that carried the media.
	Node string `json:"node,omitempty"`
	// Recovered marks a record closed after a crash of the control
	// plane, from the journal: End is the last time the call was known to
	// be up, Media its counters then.
	Recovered bool `json:"recovered,omitempty"`
}

// LegMedia are one leg's media counters.
type LegMedia struct {
	// PacketsIn and BytesIn came from the leg's peer; PacketsOut and
	// BytesOut went to it.
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	// Dropped adds up the packets dropped for any reason.
	Dropped uint64 `json:"dropped"`
	// Kind is the leg's transport: "webrtc" or "sip" (plain RTP).
	Kind string `json:"kind,omitempty"`
	// Quality is the leg's media quality (nil when nothing was measured).
	Quality *Quality `json:"quality,omitempty"`
}

// MediaOf is the media section of a record from a dataplane session's
// state (nil for none).
func MediaOf(s *pb.Session) []LegMedia {
	var out []LegMedia
	for _, l := range s.GetLegs() {
		lc := l.GetCounters()
		kind := "sip"
		if l.GetSpec().GetKind() == pb.LegKind_LEG_KIND_WEBRTC {
			kind = "webrtc"
		}
		out = append(out, LegMedia{PacketsIn: lc.GetPacketsIn(), PacketsOut: lc.GetPacketsOut(),
			BytesIn: lc.GetBytesIn(), BytesOut: lc.GetBytesOut(),
			Dropped: lc.Dropped(), // every drop_ counter of the proto
			Kind:    kind, Quality: QualityOf(l)})
	}
	return out
}

// maxKept bounds the records kept in memory; older ones are only in the
// file.
const maxKept = 10000

// Store keeps records. It is safe for concurrent use.
type Store struct {
	mu     sync.Mutex // guards the fields below
	recs   []Record
	file   *os.File
	notify []func(Record)
}

// Notify has f called with every record added from now on, after it is
// stored, on the goroutine that adds it (f must not block: the call
// history queues it).
func (s *Store) Notify(f func(Record)) {
	s.mu.Lock()
	s.notify = append(s.notify, f)
	s.mu.Unlock()
}

// NewStore returns a store that also appends to path when it is not empty.
func NewStore(path string) (*Store, error) {
	s := &Store{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("cdr: %w", err)
		}
		s.file = f
	}
	return s, nil
}

// Add stores a record and appends it to the file, then tells the
// Notify functions (outside the lock: they may take locks of their own).
func (s *Store) Add(r Record) error {
	b, err := json.Marshal(r) // outside the lock: calls end in parallel
	if err != nil {
		return err
	}
	s.mu.Lock()
	notify := s.notify
	err = s.add(r, b)
	s.mu.Unlock()
	for _, f := range notify {
		f(r)
	}
	return err
}

// add keeps r and writes its JSON b. s.mu is held.
func (s *Store) add(r Record, b []byte) error {
	s.recs = append(s.recs, r)
	if len(s.recs) >= 2*maxKept {
		// Trimmed once per maxKept records, not on every one: a copy of
		// the whole window per call was megabytes of garbage per call at
		// a thousand calls a second.
		s.recs = append(make([]Record, 0, 2*maxKept), s.recs[len(s.recs)-maxKept:]...)
	}
	if s.file == nil {
		return nil
	}
	_, err := s.file.Write(append(b, '\n'))
	return err
}

// List returns the records, oldest first.
func (s *Store) List() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.recs[max(0, len(s.recs)-maxKept):]...)
}

// Close closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}

package b2bua

import (
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
)

// Event is a change of a call's state, for the API's event stream.
type Event struct {
	// Call is the call id.
	Call string `json:"call"`
	// State is ringing, early, answered or ended, or StateQuality for a
	// quality event.
	State string `json:"state"`
	// Time of the change.
	Time time.Time `json:"time"`
	// Cause is the SIP status that ended a call.
	Cause int `json:"cause,omitempty"`
	// Reason says who or what ended it.
	Reason string `json:"reason,omitempty"`
	// Caller is the caller's user part.
	Caller string `json:"caller,omitempty"`
	// Callee is the callee's user part.
	Callee string `json:"callee,omitempty"`
	// App is the web app the call was routed to, if any.
	App string `json:"app,omitempty"`
	// Media are, in a "quality" event, each leg's media counters and
	// quality at the latest interim sample (no per-interval series).
	Media []cdr.LegMedia `json:"media,omitempty"`
}

// StateQuality names the periodic events of calls in progress that carry
// their media quality (every InterimInterval while the dataplane has
// measured something); it is not a call state.
const StateQuality = "quality"

// liveMedia is media as a live view shows it: the quality without its
// series.
func liveMedia(media []cdr.LegMedia) []cdr.LegMedia {
	out := make([]cdr.LegMedia, len(media))
	for i, m := range media {
		m.Quality = m.Quality.Latest()
		out[i] = m
	}
	return out
}

// measured reports whether any leg of media has a quality figure.
func measured(media []cdr.LegMedia) bool {
	for _, m := range media {
		if m.Quality != nil {
			return true
		}
	}
	return false
}

// watchBuffer is how many events a slow watcher may lag before it loses
// some.
const watchBuffer = 64

// Watch returns a channel of call events and a function that stops it.
func (e *Engine) Watch() (<-chan Event, func()) {
	ch := make(chan Event, watchBuffer)
	e.mu.Lock()
	if e.closing {
		close(ch)
		e.mu.Unlock()
		return ch, func() {}
	}
	e.watchers[ch] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			if _, ok := e.watchers[ch]; ok {
				delete(e.watchers, ch)
				close(ch)
			}
			e.mu.Unlock()
		})
	}
}

func (e *Engine) emit(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.watchers {
		select {
		case ch <- ev:
		default: // a slow reader loses events rather than stalling calls
		}
	}
}

package server

import (
	"context"
	"sync"
	"time"

	"github.com/strait-sbc/strait/examples/callapp/app"
)

// offers holds the calls whose webhooks the app accepted with 202, until
// a page fetches their offer and answers through Strait's API, or until
// they expire (the call's answer deadline, as the webhook says). Safe for
// concurrent use.
type offers struct {
	max     int           // frozen: how many may wait at once
	maxKeep time.Duration // frozen: the longest any is kept

	mu      sync.Mutex
	byCall  map[string]app.Incoming // guarded by mu
	arrived chan struct{}           // closed and replaced on each put; guarded by mu
}

func newOffers(max int, maxKeep time.Duration) *offers {
	return &offers{max: max, maxKeep: maxKeep, byCall: map[string]app.Incoming{}, arrived: make(chan struct{})}
}

// put keeps in until its deadline; false when max calls wait already.
func (o *offers) put(in app.Incoming, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire(now)
	if _, dup := o.byCall[in.Call]; !dup && len(o.byCall) >= o.max {
		return false
	}
	if in.Expires.IsZero() || in.Expires.After(now.Add(o.maxKeep)) {
		in.Expires = now.Add(o.maxKeep)
	}
	o.byCall[in.Call] = in
	close(o.arrived)
	o.arrived = make(chan struct{})
	return true
}

// expire forgets the offers past their deadline. mu held.
func (o *offers) expire(now time.Time) {
	for id, in := range o.byCall {
		if now.After(in.Expires) {
			delete(o.byCall, id)
		}
	}
}

// wait returns call's offer, waiting until ctx is done for its webhook:
// the page may hear of the call (Strait's ringing event) before the
// webhook reaches this backend.
func (o *offers) wait(ctx context.Context, call string) (app.Incoming, bool) {
	for {
		o.mu.Lock()
		o.expire(time.Now())
		in, ok := o.byCall[call]
		arrived := o.arrived
		o.mu.Unlock()
		if ok {
			return in, true
		}
		select {
		case <-ctx.Done():
			return app.Incoming{}, false
		case <-arrived:
		}
	}
}

// len returns how many offers wait.
func (o *offers) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byCall)
}

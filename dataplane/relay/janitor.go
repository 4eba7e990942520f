package relay

import (
	"time"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sweepInterval is how often timers are checked: consent and media timeouts
// are tens of seconds, so a second's resolution is plenty.
const sweepInterval = time.Second

func (e *Engine) janitor() {
	defer e.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.Sweep()
		}
	}
}

// Sweep raises the events that time causes: CONSENT_EXPIRED when a WebRTC
// leg's path has had no valid check for ConsentTimeout (the packet path
// already stopped sending to it), and MEDIA_TIMEOUT when a leg that should
// be sending has sent nothing for the session's media timeout. The engine
// calls it every second; tests with a fake clock call it directly.
func (e *Engine) Sweep() {
	now := e.cfg.Now().UnixNano()
	for _, s := range e.Sessions() {
		s.sampleQuality(now, false)
		cfg := s.cfg.Load()
		timeout := s.mediaTimeout.Load()
		for _, l := range s.legs {
			if p := l.path.Load(); p != nil && now-p.consent.Load() > int64(ConsentTimeout) {
				if p.expired.CompareAndSwap(false, true) {
					e.event(l, pb.EventType_EVENT_TYPE_CONSENT_EXPIRED, p.addr.String())
				}
			}
			if !expectsMedia(&cfg.legs[l.index]) {
				continue
			}
			// Silence counts from the last packet, or from the last
			// negotiation: resuming after a long hold starts the clock anew.
			since := max(l.ctr.lastIn.Load(), s.updated.Load())
			if now-since > timeout && l.timedOut.CompareAndSwap(false, true) {
				e.event(l, pb.EventType_EVENT_TYPE_MEDIA_TIMEOUT, "")
			}
		}
	}
}

// expectsMedia reports whether Strait relays media received on any of the
// leg's streams: a leg on hold (Strait's side sendonly or inactive) is
// expected to be silent.
func expectsMedia(lc *legConfig) bool {
	for i := range lc.streams {
		if lc.streams[i].recv {
			return true
		}
	}
	return false
}

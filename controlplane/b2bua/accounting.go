package b2bua

import (
	"context"
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/internal/logging"
)

// DefaultInterimInterval is how often a call's accounting is brought up to
// date in the journal (and its media counters sampled): what a crash of
// the control plane or the loss of a dataplane node can cost a CDR.
const DefaultInterimInterval = 5 * time.Second

// reasonNodeLost ends the calls whose dataplane node went away.
const reasonNodeLost = "media node lost"

// mediaSample is a call's media as the last interim saw it.
type mediaSample struct {
	media []cdr.LegMedia
	node  string
}

// journalStart records a new call in the journal (its fields are frozen
// by now).
func (e *Engine) journalStart(c *Call) {
	if e.cfg.Journal == nil || c.sub {
		return
	}
	r := cdr.Record{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, Start: c.start}
	if err := e.cfg.Journal.Start(r); err != nil {
		c.log.Warn("CDR journal: start not recorded", "err", err)
	}
}

// journalAnswered records the answer at once (it changes the bill). Loop
// only.
func (c *Call) journalAnswered(at time.Time, direction string) {
	if j := c.e.cfg.Journal; j != nil && !c.sub {
		if err := j.Interim(c.ID, cdr.Interim{Answer: &at, Direction: direction, At: at}); err != nil {
			c.log.Warn("CDR journal: answer not recorded", "err", err)
		}
	}
}

// interimLoop samples every call's media counters each InterimInterval
// (one ListSessions per node), keeps them on the call (its CDR's media if
// its node is lost) and makes them durable in the journal.
func (e *Engine) interimLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.InterimInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		calls := e.snapshot()
		if len(calls) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.InterimInterval)
		live := e.cfg.Pool.Live(ctx)
		cancel()
		now := time.Now()
		for _, c := range calls {
			if c.sub {
				continue
			}
			select {
			case <-e.stop: // a shutdown does not wait for a round of samples
				return
			default:
			}
			id := c.Info().Session // the loop owns c.m: read what it published
			s, ok := live[id]
			if id == "" || !ok {
				continue
			}
			media := legMedia(s)
			node := e.cfg.Pool.NodeOf(id)
			c.sample.Store(&mediaSample{media: media, node: node})
			if measured(media) && c.State() != StateEnded {
				e.emit(Event{Call: c.ID, State: StateQuality, Time: now, Caller: c.caller, Callee: c.callee, Media: liveMedia(media)})
				if e.cfg.HEP != nil {
					e.hepQuality(c, s, now)
				}
			}
			if e.cfg.Journal != nil {
				e.cfg.Journal.Interim(c.ID, cdr.Interim{Media: media, Node: node, At: now})
			}
		}
		if e.cfg.Journal != nil {
			if err := e.cfg.Journal.Flush(); err != nil {
				e.log.Warn("CDR journal: interim not recorded", "err", err)
			}
		}
	}
}

// onSessionLost ends the call whose session went with its dataplane node:
// BYE on both legs (CANCEL while ringing), and a CDR that says why, with
// the media counted until the last interim.
func (e *Engine) onSessionLost(s dpool.LostSession) {
	e.mu.Lock()
	c := e.calls[s.Labels[dpool.LabelCall]]
	e.mu.Unlock()
	if c == nil {
		return
	}
	c.log.Warn("dataplane node lost; ending the call", logging.KeyNode, s.Node, logging.KeySession, s.ID)
	c.stop(503, reasonNodeLost, nil)
}

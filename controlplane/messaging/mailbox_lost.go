package messaging

import (
	"context"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// StoreLost drops from the index the messages the state store no longer
// holds, after it lost its records (a Redis restarted without
// persistence: state.Writer.OnLost): they are gone, nobody can deliver
// them. Each is counted as strait_messages_offline_total{event="lost"};
// it returns how many. Messages stored since the store came back stay.
func (b *Mailbox) StoreLost(ctx context.Context) (int, error) {
	asked := time.Now()
	gen, genOK, err := state.Generation(ctx, b.cfg.Store)
	if err != nil {
		return 0, err
	}
	recs, err := b.cfg.Store.Load(ctx, Offline)
	if err != nil {
		return 0, err
	}
	if genOK {
		b.mu.Lock()
		b.gen = gen // a catch-up (resync) does not count these again
		b.mu.Unlock()
	}
	type entry struct{ user, key string }
	var gone []entry
	b.mu.Lock()
	for u, q := range b.index {
		for _, w := range q {
			if _, kept := recs[w.key]; !kept && w.at.Before(asked) {
				gone = append(gone, entry{u, w.key})
			}
		}
	}
	b.mu.Unlock()
	n := 0
	for _, g := range gone {
		if b.drop(g.user, g.key) {
			n++
		}
	}
	b.events.WithLabelValues("lost").Add(float64(n))
	return n, nil
}

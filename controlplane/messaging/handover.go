package messaging

import (
	"context"
	"time"
)

// handOverTimeout bounds one hand-over of a user's kept messages to its
// listeners (a few store round trips and bus publications per message).
const handOverTimeout = 30 * time.Second

// handOverRounds bounds how many times in a row a hand-over runs again
// for messages kept while it ran.
const handOverRounds = 4

// HandOver hands the messages kept for user to its API listeners when it
// has some on this process (Config.Live): the ones kept while they were
// listening, which they did not get live because the mailbox claimed them
// first (claim.go), or kept between the listener's opening (Take) and its
// registration. The messages go out on the bus (every control plane's
// listeners of user get them, none claims them) and are removed. It runs
// on a goroutine of its own, one per user at a time; Close waits for it.
func (b *Mailbox) HandOver(user string) { b.handOver(user) }

func (b *Mailbox) handOver(user string) {
	if b.cfg.Live == nil || !b.cfg.Live.Listening(user) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.index[user]) == 0 {
		return
	}
	if _, running := b.handing[user]; running {
		b.handing[user] = true // run again when done
		return
	}
	b.handing[user] = false
	b.wg.Add(1)
	go b.handOverLoop(user)
}

// handOverLoop hands user's messages over until none were kept meanwhile.
func (b *Mailbox) handOverLoop(user string) {
	defer b.wg.Done()
	for round := 1; ; round++ {
		ctx, cancel := context.WithTimeout(b.ctx, handOverTimeout)
		b.handTo(ctx, user)
		cancel()
		b.mu.Lock()
		if !b.handing[user] || round >= handOverRounds || b.ctx.Err() != nil {
			delete(b.handing, user)
			b.mu.Unlock()
			return
		}
		b.handing[user] = false
		b.mu.Unlock()
	}
}

// handTo publishes user's kept messages for its listeners, in order, and
// removes each; it stops when the listeners are gone (the rest waits).
func (b *Mailbox) handTo(ctx context.Context, user string) {
	msgs, done := b.Take(ctx, user)
	defer done()
	for _, m := range msgs {
		if !b.cfg.Live.Listening(user) {
			return
		}
		if err := b.cfg.Live.Send(ctx, m, false); err != nil {
			b.cfg.Log.Warn("mailbox: kept message not handed to its listener", "id", m.ID, "to", user, "err", err)
			return
		}
		if err := b.Delivered(ctx, m); err != nil {
			b.cfg.Log.Warn("mailbox: delivered message not removed", "id", m.ID, "err", err)
		}
	}
	if len(msgs) > 0 {
		b.cfg.Log.Info("kept messages handed to listeners", "to", user, "count", len(msgs))
	}
}

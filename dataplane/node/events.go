package node

import (
	"context"
	"sync"

	"github.com/strait-sbc/strait/dataplane/relay"
	"github.com/strait-sbc/strait/internal/logging"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// watchBuffer is how many events a watcher may fall behind by before newer
// events are dropped for it (and counted): a stuck control plane must never
// stall a packet worker.
const watchBuffer = 1024

type watcher struct {
	session string
	ch      chan *pb.Event
	once    sync.Once
}

func (w *watcher) close() { w.once.Do(func() { close(w.ch) }) }

// Event implements relay.Observer: it fans the event out to watchers
// without blocking.
func (n *Node) Event(s *relay.Session, leg int, typ pb.EventType, detail string) {
	ev := &pb.Event{
		Type:      typ,
		SessionId: s.ID,
		Leg:       uint32(leg),
		UnixNano:  n.now().UnixNano(),
		Detail:    detail,
		Labels:    s.Labels,
	}
	n.log.Debug("session event", logging.KeySession, s.ID, logging.KeyCall, s.Labels[LabelCall], logging.KeyLeg, leg,
		"event", typ.String(), "detail", detail)
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.watchers {
		if w.session != "" && w.session != s.ID {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			n.dropped.Add(1)
		}
	}
}

// WatchEvents implements pb.Node.
func (n *Node) WatchEvents(ctx context.Context, sessionID string) (<-chan *pb.Event, error) {
	w := &watcher{session: sessionID, ch: make(chan *pb.Event, watchBuffer)}
	n.mu.Lock()
	n.watchers[w] = struct{}{}
	n.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-n.done: // Close already closed the channel
			return
		}
		n.mu.Lock()
		if _, ok := n.watchers[w]; ok {
			delete(n.watchers, w)
			w.close()
		}
		n.mu.Unlock()
	}()
	return w.ch, nil
}

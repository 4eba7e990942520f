package dpool

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// ErrSessionGone is returned by Adopt when no node holds the session any
// more (its node restarted, or the session was deleted).
var ErrSessionGone = errors.New("dpool: no node holds the session any more")

// Adopt takes over a session a previous control plane created, after a
// restart: the pool asks the node that held it (by name; every running
// node when the name is unknown or empty) for its live state and counts
// it as its own from then on, as if it had created it (its node's count,
// its events, its loss). labels are the session's labels as the pool
// would have set them.
func (p *Pool) Adopt(ctx context.Context, id, nodeName string, labels map[string]string) (*pb.Session, error) {
	var errs []error
	for _, n := range p.candidates(nodeName) {
		s, err := p.api(n).GetSession(ctx, id)
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		p.mu.Lock()
		if _, ok := p.owner[id]; !ok {
			p.owner[id] = n
			p.labels[id] = labels
			n.sessions++
			p.changed(n)
		}
		p.mu.Unlock()
		return s, nil
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nil, ErrSessionGone
}

// candidates are the nodes to ask for a session that was on nodeName:
// that one if it is a running member, else every running member (the
// node's name changed, e.g. a new address from discovery).
func (p *Pool) candidates(nodeName string) []*Node {
	running := p.running()
	for _, n := range running {
		if n.Name == nodeName {
			return []*Node{n}
		}
	}
	return running
}

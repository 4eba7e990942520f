// What a process does when the state store comes back empty (a Redis
// restarted without persistence, a failover to a replica that had not
// caught up), beyond the owners' rewrites of their live records (calls,
// bindings, node sessions, secrets, the member's lease: each registers
// its own state.Writer.OnLost).

package server

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// watchStoreLoss counts the losses (strait_state_store_lost_total) and
// registers storeLost.
func (s *Server) watchStoreLoss() {
	s.Metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "strait_state_store_lost_total",
		Help: "Times the state store was found to have lost its records (a Redis restarted without persistence): live calls, registrations, sessions, secrets and presence published here are written again; offline messages and call histories are lost."},
		func() float64 { return float64(s.State.Lost()) }))
	s.State.OnLost(s.storeLost)
}

// storeLost writes again the presence users published through this
// process (what it holds live; a peer's is its own to rewrite), drops the
// offline messages that went with the store from the mailbox's index
// (counted, event "lost"), and says in one line what is lost for good:
// offline messages and call histories were only in the store. Nonce
// counts went too: the digest's nonce store forgets the nonces issued
// before (stale=true, a fresh nonce; see nonceStore). It runs on the
// Writer's goroutine.
func (s *Server) storeLost() {
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	defer cancel()
	presence, err := s.Presence.Rewrite(ctx)
	if err != nil {
		s.log.Warn("state store: presence published here not written again", "err", err)
	}
	messages := 0
	if s.Mailbox != nil {
		if messages, err = s.Mailbox.StoreLost(ctx); err != nil {
			s.log.Warn("state store: offline messages not checked after the loss", "err", err)
		}
	}
	s.log.Warn("state store lost its records: offline messages and call histories kept only there are lost",
		"offline_messages_lost", messages, "presence_written_again", presence)
}

// Stopping a Server: a drain (Close) or a handover to the next process
// (Handover).

package server

import (
	"context"
	"errors"
	"time"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// Close hangs up every call, stops the listeners and the dataplane.
func (s *Server) Close() error { return s.close(false) }

// Handover stops the server without ending the answered calls, for a
// control plane that takes them over from the state store (an upgrade):
// their records are written and kept, their sessions stay on remote
// nodes, their CDR journal entries stay open; nobody gets a BYE. Browsers
// see their WebSocket close and reconnect to the next process. Calls
// still ringing end as with Close. All in one, the in-process node's
// sessions are saved (ports, ICE credentials, SRTP keys) and the node
// stops without a word to the peers: the next process re-creates them.
func (s *Server) Handover() error { return s.close(true) }

func (s *Server) close(handover bool) error {
	s.once.Do(func() {
		s.handingOver.Store(handover)
		close(s.stop)
		if f := s.flows.Load(); f != nil && handover && !s.crashed.Load() {
			// The peers' calls relayed over this process's WebSockets wait
			// for the browsers' new flows rather than end.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			f.HandOver(ctx)
			cancel()
		}
		if p := s.peers.Load(); p != nil {
			p.Close() // no more requests from peers about calls that end now
		}
		if s.PresenceSIP != nil {
			s.PresenceSIP.Close() // publications removed, subscriptions ended, while SIP still runs
		}
		if s.Engine != nil {
			if handover {
				s.Engine.Detach()
			} else {
				s.Engine.Close()
			}
		}
		if f := s.flows.Load(); f != nil {
			f.Close() // after the calls' BYEs, which may go through peers
		}
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.httpSrv.Shutdown(ctx)
			cancel()
			s.httpSrv.Close()
		} else if s.httpLn != nil {
			s.httpLn.Close()
		}
		if s.WS != nil {
			s.WS.Close()
		}
		if s.Stack != nil {
			s.Stack.Close()
		}
		if s.hep != nil {
			sipnet.EnableCapture(nil)
			s.hep.Close()
		}
		if s.ups != nil {
			s.ups.Close()
		}
		if s.Pool != nil {
			s.Pool.Close()
		}
		switch {
		case s.local != nil && handover:
			if s.keeper != nil {
				s.keeper.finish() // the sessions as they are now, kept
			}
			s.local.Abandon()
		case s.local != nil:
			s.local.Close()
			if s.keeper != nil {
				s.keeper.finish() // every session ended: their records go
			}
		}
		if s.journal != nil {
			s.closeErr = s.journal.Close()
		}
		if s.History != nil {
			s.History.Close() // the calls' last records, before the store closes
		}
		if s.Presence != nil {
			s.Presence.Close()
		}
		if s.Messages != nil {
			s.Messages.Close()
		}
		if s.mail != nil {
			s.mail.close()
		}
		if s.Mailbox != nil {
			s.Mailbox.Close()
		}
		if s.State != nil {
			if err := s.State.Close(); err != nil {
				s.log.Warn("state store: changes not written", "err", err)
			}
		}
		// The lease goes once the calls' last records are written: a peer
		// (or the next process) may take over what a handover left at
		// once. A crash (tests) leaves it to expire.
		if m := s.member.Load(); m != nil {
			if s.crashed.Load() {
				m.Abandon()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				m.Leave(ctx, handover)
				cancel()
			}
		}
		if s.bindings != nil {
			s.bindings.Close()
		}
		if s.store != nil {
			s.store.Close()
		}
		if s.CDR != nil {
			s.closeErr = errors.Join(s.closeErr, s.CDR.Close())
		}
		if s.httpSrv == nil {
			return
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// Several control planes on one shared state store (package cluster):
// this process's membership, which stored calls it carries on at start,
// and the takeover of a dead peer's calls.

package server

import (
	"context"
	"errors"
	"time"

	"github.com/strait-sbc/strait/controlplane/api"
	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cluster"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/state"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// joinCluster makes this process a member when the store is shared
// (Redis): it takes its lease and lists itself. A store that does not
// answer now leaves the process without membership: it restores nothing
// (Restore fails the same way) and retries joining in the background.
func (s *Server) joinCluster() {
	s.Metrics.SetClusterMembers(1)
	if !state.IsShared(s.store) {
		return
	}
	s.State.SetGate(func() error {
		if !s.owning() {
			return errFenced
		}
		return nil
	})
	s.State.OnLost(func() {
		if m := s.member.Load(); m != nil {
			ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
			defer cancel()
			if err := m.Relist(ctx); err != nil {
				s.log.Warn("cluster: not listed again in the state store; the next heartbeat tries", "err", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	defer cancel()
	m, err := cluster.Join(ctx, s.clusterConfig())
	if err != nil {
		s.log.Warn("cluster: not joined at start; retrying in the background", "instance", s.Instance, "err", err)
		s.wg.Add(1)
		go s.joinLater()
		return
	}
	s.member.Store(m)
	s.servePeers(ctx, m)
}

// shareBindings makes the registry one of the members' (with a shared
// store): the bindings it holds name this process, their changes go to
// the peers and theirs come here, so that a request for a browser
// another member holds is routed there (servePeers relays it). Called
// before the registry loads the store.
func (s *Server) shareBindings(ctx context.Context) {
	if !state.IsShared(s.store) {
		return
	}
	alive := map[string]bool{}
	isAlive := func(holder string) bool {
		if holder == "" {
			return false
		}
		if a, seen := alive[holder]; seen {
			return a
		}
		a, err := cluster.LeaseHeld(ctx, s.store, holder)
		alive[holder] = a && err == nil
		return alive[holder]
	}
	b, err := cluster.ShareBindings(ctx, s.store, s.Registry.ApplyShared, s.Registry.ResyncShared, s.log.With("component", "cluster"))
	if err != nil {
		s.log.Warn("cluster: registrations not shared with the other control planes", "err", err)
		s.Registry.Share(s.Instance, nil, isAlive)
		return
	}
	s.bindings = b
	s.Registry.Share(s.Instance, b.Publish, isAlive)
}

// peerDead forgets what a member that died held: its browsers' bindings
// become flow-failed (430) until they register again, the flows relayed
// through it close (calls on them end as with a closed WebSocket).
func (s *Server) peerDead(id string) {
	s.Registry.HolderGone(id)
	if f := s.flows.Load(); f != nil {
		f.PeerGone(id)
	}
}

// servePeers answers the other members' requests about this process's
// calls, lets the API ask them about theirs, and relays browsers' flows
// between them.
func (s *Server) servePeers(ctx context.Context, m *cluster.Member) {
	f, err := cluster.NewFlows(ctx, cluster.FlowsConfig{Member: m, Stack: s.Stack, WS: s.WS, OnRelay: s.Metrics.ClusterRelay,
		OnMoved: s.Registry.HolderFlowGone, Log: s.log.With("component", "cluster")})
	if err != nil {
		s.log.Warn("cluster: browsers' flows not relayed between control planes", "err", err)
	} else {
		s.flows.Store(f)
		s.Engine.SetRelay(f)
	}
	p, err := cluster.NewPeers(ctx, cluster.PeersConfig{Member: m, Engine: s.Engine, OnRequest: s.Metrics.ClusterRequest,
		Log: s.log.With("component", "cluster")})
	if err != nil {
		s.log.Warn("cluster: requests from other control planes not served", "err", err)
		return
	}
	s.peers.Store(p)
}

// apiPeers is what the API asks about calls other control planes hold:
// nil with a store of this process's own.
func (s *Server) apiPeers() api.Peers {
	if !state.IsShared(s.store) {
		return nil
	}
	return serverPeers{s}
}

// serverPeers is the API's view of the peers, which exist once this
// process joined (maybe after start, see joinLater).
type serverPeers struct{ s *Server }

func (sp serverPeers) get() (*cluster.Peers, error) {
	if p := sp.s.peers.Load(); p != nil {
		return p, nil
	}
	return nil, errNotJoined
}

func (sp serverPeers) Calls(ctx context.Context) ([]b2bua.Info, error) {
	p, err := sp.get()
	if err != nil {
		return nil, err
	}
	return p.Calls(ctx)
}

func (sp serverPeers) Call(ctx context.Context, id string) (b2bua.Info, error) {
	p, err := sp.get()
	if err != nil {
		return b2bua.Info{}, err
	}
	return p.Call(ctx, id)
}

func (sp serverPeers) Hangup(ctx context.Context, id string) error {
	p, err := sp.get()
	if err != nil {
		return err
	}
	return p.Hangup(ctx, id)
}

func (sp serverPeers) SendDTMF(ctx context.Context, id, digits string) error {
	p, err := sp.get()
	if err != nil {
		return err
	}
	return p.SendDTMF(ctx, id, digits)
}

func (s *Server) clusterConfig() cluster.Config {
	return cluster.Config{Store: s.store, ID: s.Instance, TakeOver: s.takeOver, OnMembers: s.Metrics.SetClusterMembers, OnDead: s.peerDead,
		OnRegained: s.regained, Heartbeat: s.opt.ClusterHeartbeat, TTL: s.opt.ClusterTTL, Log: s.log.With("component", "cluster")}
}

// errFenced is the state Writer's gate while this member's lease has
// expired (cluster.Member.Owning): nothing is written, new calls get 503.
var errFenced = errors.New("fenced: this control plane's lease expired before it could renew it (cut off from the state store)")

// owning reports whether this process may act for its calls: always
// with a store of its own; with a shared one while its lease holds.
func (s *Server) owning() bool {
	m := s.member.Load()
	return m == nil || m.Owning()
}

// regained sorts the calls out when this member renews a lease that had
// expired (cluster.Config.OnRegained): the calls a peer took over
// meanwhile are dropped here without BYE (their records name the peer, or
// the peer ended them), and what this process queued for them is
// discarded; the others it carries on, their records written again.
func (s *Server) regained(ctx context.Context) error {
	m := s.member.Load()
	if m == nil {
		return nil
	}
	// A store that came back empty meanwhile lost this member's listing
	// too, which is no sign of a takeover: nobody could have seen this
	// member's calls to take them (the check writes every record again).
	lost, err := s.State.CheckStore(ctx)
	if err != nil {
		return err
	}
	taken := false
	if !lost {
		if taken, err = m.TakenOver(ctx); err != nil {
			return err
		}
	}
	owned, elsewhere, err := s.Engine.Owned(ctx, taken)
	if err != nil {
		return err
	}
	dropped := s.Engine.Disown(elsewhere)
	s.Engine.RewriteState()
	s.log.Warn("cluster: lease regained after it had expired", "instance", s.Instance, "taken_over", taken,
		"calls_kept", len(owned), "calls_dropped", dropped)
	return nil
}

// joinLater retries Join every heartbeat until it works or the server
// stops.
func (s *Server) joinLater() {
	defer s.wg.Done()
	t := time.NewTicker(cluster.DefaultHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
		m, err := cluster.Join(ctx, s.clusterConfig())
		cancel()
		if err == nil {
			s.member.Store(m)
			s.log.Info("cluster: joined", "instance", s.Instance)
			ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
			s.servePeers(ctx, m)
			cancel()
			m.Start()
			return
		}
	}
}

// restoreCalls carries on the calls of the state store this process owns:
// all of them with a store of its own (embedded, memory); with a shared
// one, its own (this instance id, or records older than ownership) and,
// through the membership, those of members whose lease expired. It
// returns the calls and sessions carried on.
func (s *Server) restoreCalls(ctx context.Context) (b2bua.Restored, error) {
	m := s.member.Load()
	if m == nil {
		if state.IsShared(s.store) {
			// Not a member (the store did not answer): nothing is known
			// to be this process's.
			return b2bua.Restored{}, errNotJoined
		}
		return s.Engine.Restore(ctx, nil)
	}
	own, err := s.Engine.Restore(ctx, func(owner string) bool { return owner == s.Instance || owner == "" })
	if err != nil {
		return own, err
	}
	dead, err := m.TakeOverDead(ctx)
	if err != nil {
		s.log.Warn("cluster: dead control planes not all taken over at start; the heartbeat tries again", "err", err)
	}
	if len(dead) > 0 {
		s.log.Info("cluster: took over the calls of dead control planes", "instances", dead)
	}
	// What the takeovers carried on is in the engine too.
	for _, in := range s.Engine.Calls() {
		own.Calls[in.ID] = true
		if in.Session != "" {
			own.Sessions[in.Session] = true
		}
	}
	return own, nil
}

// takeOver carries on the calls of the dead member dead (cluster.Config's
// TakeOver): they become this process's, written before it returns; the
// sessions dead made for calls that cannot go on (ringing ones) are
// deleted.
func (s *Server) takeOver(ctx context.Context, dead string) error {
	r, err := s.Engine.Restore(ctx, func(owner string) bool { return owner == dead })
	if err != nil {
		return err
	}
	// An all-in-one peer's in-process sessions died with it: their
	// records go (its calls found no session and end with BYE).
	if n, err := dropSessionsOf(ctx, s.State, dead, r.Sessions); err != nil {
		s.log.Warn("cluster: the dead control plane's saved in-process sessions not read", "instance", dead, "err", err)
	} else if n > 0 {
		s.log.Info("cluster: deleted the dead control plane's saved in-process sessions", "instance", dead, "count", n)
	}
	if err := s.State.Flush(ctx); err != nil {
		return err
	}
	s.log.Info("cluster: calls taken over", "instance", dead, "calls", len(r.Calls))
	stored, err := s.Engine.StoredCalls(ctx)
	if err != nil {
		return nil // the orphans wait for the next start's reaping
	}
	inStore := map[string]bool{}
	for _, c := range stored {
		inStore[c.Session] = true
	}
	reaped, err := s.Pool.ReapSessions(ctx, func(ss *pb.Session) bool {
		return ss.GetLabels()[dpool.LabelInstance] != dead || inStore[ss.GetId()] || r.Sessions[ss.GetId()]
	})
	if len(reaped) > 0 || err != nil {
		s.log.Info("cluster: deleted the dead control plane's orphaned sessions", "instance", dead, "count", len(reaped), "err", err)
	}
	return nil
}

// keepSession tells the start's reaping which dataplane sessions are not
// this process's to delete: those of calls carried on, and with a shared
// store those of every stored call and of live peers (their ringing calls
// have no record yet).
func (s *Server) keepSession(ctx context.Context, restored b2bua.Restored) (func(*pb.Session) bool, error) {
	m := s.member.Load()
	if m == nil {
		return func(ss *pb.Session) bool { return restored.Sessions[ss.GetId()] }, nil
	}
	stored, err := s.Engine.StoredCalls(ctx)
	if err != nil {
		return nil, err
	}
	inStore := map[string]bool{}
	for _, c := range stored {
		inStore[c.Session] = true
	}
	alive := map[string]bool{}
	return func(ss *pb.Session) bool {
		id := ss.GetId()
		if restored.Sessions[id] || inStore[id] {
			return true
		}
		inst := ss.GetLabels()[dpool.LabelInstance]
		if inst == "" || inst == s.Instance {
			return false
		}
		live, seen := alive[inst]
		if !seen {
			var err error
			live, err = m.Alive(ctx, inst)
			live = live || err != nil // unsure: keep
			alive[inst] = live
		}
		return live
	}, nil
}

// callsElsewhere returns the stored calls another control plane carries
// on: their entries in this process's CDR journal (left by a crash before
// a peer took them over) are closed without a record (the peer writes
// it).
func (s *Server) callsElsewhere(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	if s.member.Load() == nil {
		return out
	}
	stored, err := s.Engine.StoredCalls(ctx)
	if err != nil {
		return out
	}
	for id, c := range stored {
		if c.Owner != s.Instance {
			out[id] = true
		}
	}
	return out
}

// errNotJoined: with a shared store, a process that could not join does
// not know which stored calls are its own.
var errNotJoined = errors.New("not a member of the cluster (the shared store did not answer)")

// crash stops the server as a kill -9 would leave the others: no BYE, no
// record deleted, the lease left to expire (tests of takeover).
func (s *Server) crash() {
	s.crashed.Store(true)
	if m := s.member.Load(); m != nil {
		m.Abandon() // first: a killed process renews nothing while it goes
	}
	s.close(true)
}

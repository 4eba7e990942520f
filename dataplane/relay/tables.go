package relay

import (
	"slices"
	"sync"
)

// tables is what the workers' lookup tables hold for one session: its
// legs' local ufrags and its shared-port peers on every worker, its
// port-per-stream sockets on the owner worker. Session.tables records what
// was published; a change computes the tables it needs, and one function
// (tableCommands) turns the difference between the two into the commands
// that bring the workers from one to the other: creation is a change from
// no tables, deletion a change to none.
type tables struct {
	ufrags  []ufragEntry
	sockets []*Stream // streams with a port pair of their own
	shared  []sharedEntry
}

// ufragEntry maps a local ICE ufrag to its leg.
type ufragEntry struct {
	leg   *Leg
	ufrag string
}

// sharedEntry maps a peer on a shared plain port to its stream.
type sharedEntry struct {
	stream *Stream
	key    latchKey
}

// tablesOf lists what the workers must hold for a session whose legs have
// the given credentials (nil for plain legs) and streams, under cfg.
func tablesOf(legs []*Leg, creds []*iceCreds, cfg *sessionConfig) tables {
	var t tables
	for i, l := range legs {
		for c := creds[i]; c != nil; c = c.prev {
			t.ufrags = append(t.ufrags, ufragEntry{l, c.localUfrag})
		}
		for j := range cfg.legs[i].streams {
			sc := &cfg.legs[i].streams[j]
			st := sc.s
			if st.rtp != nil {
				t.sockets = append(t.sockets, st)
			}
			if st.shared != nil {
				for _, k := range sharedKeys(st, sc) {
					t.shared = append(t.shared, sharedEntry{st, k})
				}
			}
		}
	}
	return t
}

// sharedKeys are the (shared port, peer address) pairs that identify a
// shared plain stream: its RTP peer on the RTP port, and its RTCP peer on
// the RTCP port (or the RTP port with rtcp-mux).
func sharedKeys(st *Stream, sc *streamConfig) []latchKey {
	var keys []latchKey
	if sc.remote.IsValid() {
		keys = append(keys, latchKey{st.shared.rtp.id, sc.remote})
	}
	if sc.remoteRTCP.IsValid() && !sc.mux {
		keys = append(keys, latchKey{st.shared.rtcp.id, sc.remoteRTCP})
	}
	return keys
}

// tableCommands returns, per worker, the commands that turn the tables
// from into to for a session owned by owner: removals first, so that an
// entry that moves is never dropped after it was added.
func (e *Engine) tableCommands(owner *worker, from, to tables) [][]command {
	cmds := make([][]command, len(e.workers))
	all := func(c command) {
		for i := range cmds {
			cmds[i] = append(cmds[i], c)
		}
	}
	for _, u := range from.ufrags {
		if !slices.Contains(to.ufrags, u) {
			all(command{op: cmdRemoveUfrag, leg: u.leg, ufrag: u.ufrag})
		}
	}
	for _, s := range from.shared {
		if !slices.Contains(to.shared, s) {
			all(command{op: cmdRemoveShared, stream: s.stream, key: s.key})
		}
	}
	for _, st := range from.sockets {
		if !slices.Contains(to.sockets, st) {
			cmds[owner.id] = append(cmds[owner.id], socketCmds(st, cmdRemoveSocket)...)
		}
	}
	for _, u := range to.ufrags {
		if !slices.Contains(from.ufrags, u) {
			all(command{op: cmdAddUfrag, leg: u.leg, ufrag: u.ufrag})
		}
	}
	for _, s := range to.shared {
		if !slices.Contains(from.shared, s) {
			all(command{op: cmdAddShared, stream: s.stream, key: s.key})
		}
	}
	for _, st := range to.sockets {
		if !slices.Contains(from.sockets, st) {
			cmds[owner.id] = append(cmds[owner.id], socketCmds(st, cmdAddSocket)...)
		}
	}
	return cmds
}

func socketCmds(st *Stream, op cmdOp) []command {
	return []command{
		{op: op, stream: st, sock: st.rtp},
		{op: op, stream: st, sock: st.rtcp, rtcp: true},
	}
}

// barrier runs cmds on every worker (cmds[i] on worker i) and waits until
// all were applied: after it returns, every worker's tables hold what was
// added and no worker holds what was removed.
func (e *Engine) barrier(cmds [][]command) {
	var wg sync.WaitGroup
	for i, w := range e.workers {
		wg.Add(1)
		cs := append(cmds[i], command{op: cmdBarrier, done: &wg})
		w.post(cs...)
	}
	wg.Wait()
}

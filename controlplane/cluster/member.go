package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/state"
)

// Lease timing (see the package doc).
const (
	// DefaultHeartbeat is how often a member renews its lease and checks
	// its peers.
	DefaultHeartbeat = 2 * time.Second
	// DefaultTTL is how long a lease lasts after its last renewal.
	DefaultTTL = 10 * time.Second
	// claimTTL bounds a takeover: a survivor that dies while taking over
	// leaves the claim to expire, and another survivor then finishes.
	claimTTL = 30 * time.Second
	// opTimeout bounds each store operation of the heartbeat.
	opTimeout = 2 * time.Second
)

// leaseName and claimName are the lease names a member uses.
func leaseName(id string) string { return "instance/" + id }
func claimName(id string) string { return "takeover/" + id }

// CheckID checks an --instance-id value (config.CheckInstanceID).
func CheckID(id string) error { return config.CheckInstanceID(id) }

// DefaultID is the host name and a random suffix: unique per process
// (a restarted process takes its predecessor's calls over once its lease
// expires, or at once after a handover, which releases it). Give a fixed
// --instance-id for a restart to carry its calls on at once even after a
// crash.
func DefaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "strait"
	}
	host = regexp.MustCompile(`[^A-Za-z0-9._-]`).ReplaceAllString(host, "-")
	if len(host) > 48 {
		host = host[:48]
	}
	b := make([]byte, 4)
	rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// Config configures a Member.
type Config struct {
	// Store is the shared store. Required.
	Store state.Store
	// ID is this control plane's instance id. Required.
	ID string
	// Heartbeat and TTL: 0 is DefaultHeartbeat / DefaultTTL.
	Heartbeat, TTL time.Duration
	// TakeOver carries on the calls of the dead member and makes that
	// durable (their records name this member) before it returns; an
	// error leaves the member listed, to be tried again at the next
	// heartbeat. It must skip calls it already carries on. Required.
	TakeOver func(ctx context.Context, dead string) error
	// OnMembers, when set, is told how many members hold a live lease
	// after each check.
	OnMembers func(n int)
	// OnRegained, when set, runs when this member renews its lease after
	// it had expired (cut off from the store for longer than TTL): it
	// sorts this process's calls into those a peer took over meanwhile
	// (dropped here, without BYE) and those nobody did (carried on). The
	// member owns nothing until it returns nil (Owning); an error leaves
	// it fenced, to be tried again at the next heartbeat.
	OnRegained func(ctx context.Context) error
	// OnDead, when set, is told of a member seen without a lease at two
	// checks in a row (once per death; on every survivor, whichever takes
	// its calls over): its WebSockets are gone.
	OnDead func(id string)
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// memberRecord is a member's entry in the store.
type memberRecord struct {
	Since time.Time `json:"since"`
}

// Member is this control plane's membership. Its methods are safe for
// concurrent use.
type Member struct {
	// Frozen after Join.
	cfg  Config
	log  *slog.Logger
	rec  []byte // this member's entry
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// running is set by Start: run closes done.
	running atomic.Bool
	// down is the set of members seen without a live lease at the last
	// check (IsLive), replaced whole by each heartbeat.
	downSet atomic.Pointer[map[string]bool]

	tmu    sync.Mutex      // guards taking
	taking map[string]bool // members being taken over by a goroutine of twg
	twg    sync.WaitGroup  // takeovers started by the heartbeat

	// renewed is when the last renewal that succeeded was sent (Unix
	// nanoseconds): the lease lasts TTL from then at least. Written by
	// Join and the heartbeat, read by Owning.
	renewed atomic.Int64
	// fenced: the lease expired before it could be renewed; set until
	// OnRegained has sorted the calls out.
	fenced atomic.Bool

	// Owned by the heartbeat goroutine (run).
	suspects map[string]bool // members seen without a lease at the last check
	dead     map[string]bool // members OnDead was told of (until seen alive again)
	down     bool            // the last renewal failed
}

// Join takes this control plane's lease and lists it as a member. It
// does not start the heartbeat (Start does), so that the caller can
// restore its own calls and take over dead members' first.
func Join(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.Store == nil || cfg.TakeOver == nil {
		return nil, errors.New("cluster: Store and TakeOver are required")
	}
	if err := CheckID(cfg.ID); err != nil {
		return nil, err
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Member{cfg: cfg, log: cfg.Log, stop: make(chan struct{}), done: make(chan struct{}), suspects: map[string]bool{},
		taking: map[string]bool{}, dead: map[string]bool{}}
	ok, err := cfg.Store.Lease(ctx, leaseName(cfg.ID), cfg.ID, cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("cluster: taking the lease of instance %s: %w", cfg.ID, err)
	}
	if !ok {
		return nil, fmt.Errorf("cluster: the lease of instance %s is held by someone else", cfg.ID)
	}
	m.renewed.Store(time.Now().UnixNano())
	m.rec, _ = json.Marshal(memberRecord{Since: time.Now().UTC()})
	if err := cfg.Store.Apply(ctx, []state.Change{{Kind: state.Members, Key: cfg.ID, Value: m.rec}}); err != nil {
		cfg.Store.Release(ctx, leaseName(cfg.ID), cfg.ID)
		return nil, fmt.Errorf("cluster: listing instance %s: %w", cfg.ID, err)
	}
	return m, nil
}

// RenewedAt is when the last lease renewal that succeeded was sent: the
// lease lasts at least TTL from then, so no peer takes this member's calls
// over before RenewedAt plus TTL.
func (m *Member) RenewedAt() time.Time { return time.Unix(0, m.renewed.Load()) }

// Owning reports whether this member may act as the owner of its calls:
// its lease has not expired since its last renewal (a peer may take its
// calls over once it has), and, if it had, the calls were sorted out
// again (OnRegained). A member that does not own writes nothing for its
// calls and answers none of their requests (fencing): it cannot tell
// whether a peer has them now.
func (m *Member) Owning() bool {
	if m.fenced.Load() {
		return false
	}
	if time.Since(time.Unix(0, m.renewed.Load())) < m.cfg.TTL {
		return true
	}
	if m.fenced.CompareAndSwap(false, true) {
		m.log.Error("cluster: lease expired before it could be renewed; this control plane stops acting for its calls until it renews and finds which a peer took over",
			"instance", m.cfg.ID, "ttl", m.cfg.TTL)
	}
	return false
}

// ErrTakeoverRunning: a peer is taking this member over right now
// (TakenOver); ask again once it has finished.
var ErrTakeoverRunning = errors.New("cluster: a peer is taking this control plane's calls over")

// TakenOver reports whether a peer took this member over (it is no longer
// listed: the survivor unlists a member once its calls are restored and
// written with the survivor as owner), for OnRegained; ErrTakeoverRunning
// while a peer holds the claim.
func (m *Member) TakenOver(ctx context.Context) (bool, error) {
	if _, busy, err := m.cfg.Store.Get(ctx, state.Leases, claimName(m.cfg.ID)); err != nil || busy {
		if err == nil {
			err = ErrTakeoverRunning
		}
		return false, err
	}
	_, listed, err := m.cfg.Store.Get(ctx, state.Members, m.cfg.ID)
	return !listed, err
}

// Relist takes the lease again and lists this member again, at once, in
// a store that lost its records (state.Writer.OnLost: a Redis restarted
// without persistence): a process started meanwhile must find the owner
// of the calls this one rewrites among the members, or it would not know
// whether to leave them to it. The heartbeat would do both within a beat.
func (m *Member) Relist(ctx context.Context) error {
	if _, err := m.cfg.Store.Lease(ctx, leaseName(m.cfg.ID), m.cfg.ID, m.cfg.TTL); err != nil {
		return err
	}
	return m.cfg.Store.Apply(ctx, []state.Change{{Kind: state.Members, Key: m.cfg.ID, Value: m.rec}})
}

// IsLive reports whether the member id was not seen without a lease at
// the last check (at most a heartbeat ago; a member that joined since
// counts as live): no store round trip.
func (m *Member) IsLive(id string) bool {
	if id == m.cfg.ID {
		return true
	}
	d := m.downSet.Load()
	return d == nil || !(*d)[id]
}

// ID is this control plane's instance id.
func (m *Member) ID() string { return m.cfg.ID }

// Start starts the heartbeat: renewals, and takeover of members whose
// lease expired.
func (m *Member) Start() {
	if m.running.CompareAndSwap(false, true) {
		go m.run()
	}
}

// TakeOverDead takes over, now, every member whose lease has expired
// (at start: a process that finds a dead peer need not wait two
// heartbeats to be sure). It returns the ids taken over.
func (m *Member) TakeOverDead(ctx context.Context) ([]string, error) {
	members, err := m.cfg.Store.Load(ctx, state.Members)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, id := range sortedKeys(members) {
		if id == m.cfg.ID {
			continue
		}
		alive, err := m.Alive(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if alive {
			continue
		}
		done, err := m.takeOver(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			out = append(out, id)
		}
	}
	return out, errors.Join(errs...)
}

// Alive reports whether the member id holds a live lease.
func (m *Member) Alive(ctx context.Context, id string) (bool, error) {
	if id == m.cfg.ID {
		return true, nil
	}
	_, ok, err := m.cfg.Store.Get(ctx, state.Leases, leaseName(id))
	return ok, err
}

// Live lists the members holding a live lease, this one included.
func (m *Member) Live(ctx context.Context) ([]string, error) {
	members, err := m.cfg.Store.Load(ctx, state.Members)
	if err != nil {
		return nil, err
	}
	out := []string{m.cfg.ID}
	for _, id := range sortedKeys(members) {
		if id == m.cfg.ID {
			continue
		}
		if ok, err := m.Alive(ctx, id); err == nil && ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// takeOver claims the dead member id and carries its calls on. It
// reports whether it did (false: another survivor claimed it, or the
// member came back).
func (m *Member) takeOver(ctx context.Context, id string) (bool, error) {
	st := m.cfg.Store
	won, err := st.Lease(ctx, claimName(id), m.cfg.ID, claimTTL)
	if err != nil || !won {
		return false, err
	}
	// Between seeing the lease expired and claiming, the member may have
	// come back (a restart with the same id: then it carries its calls
	// on itself), or another survivor may have taken it over and
	// released its claim (the member is no longer listed).
	if alive, err := m.Alive(ctx, id); err != nil || alive {
		st.Release(ctx, claimName(id), m.cfg.ID)
		return false, err
	}
	if _, listed, err := st.Get(ctx, state.Members, id); err != nil || !listed {
		st.Release(ctx, claimName(id), m.cfg.ID)
		return false, err
	}
	m.log.Warn("control plane lease expired; taking its calls over", "instance", id)
	if err := m.cfg.TakeOver(ctx, id); err != nil {
		// The claim stays ours until it expires: nobody else restores
		// calls this process may have restored already; the next
		// heartbeat tries again (a renewal of the claim).
		return false, fmt.Errorf("cluster: taking instance %s over: %w", id, err)
	}
	err = st.Apply(ctx, []state.Change{{Kind: state.Members, Key: id}})
	st.Release(ctx, claimName(id), m.cfg.ID)
	return err == nil, err
}

// run is the heartbeat goroutine.
func (m *Member) run() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.beat()
	}
}

// beat renews the lease and checks the peers. Heartbeat goroutine only.
func (m *Member) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	now := time.Now()
	owning := m.Owning() // before the renewal: was the lease still ours?
	ok, err := m.cfg.Store.Lease(ctx, leaseName(m.cfg.ID), m.cfg.ID, m.cfg.TTL)
	switch {
	case err != nil:
		if !m.down {
			m.log.Warn("cluster: lease not renewed; peers take this control plane's calls over if it stays so", "instance", m.cfg.ID,
				"ttl", m.cfg.TTL, "err", err)
		}
		m.down = true
		return
	case !ok:
		m.log.Error("cluster: another process holds this instance id's lease (two control planes with the same --instance-id?)", "instance", m.cfg.ID)
		return
	}
	m.renewed.Store(now.UnixNano())
	if !owning {
		// Renewed after it had expired: peers may have taken calls over
		// meanwhile. Owning again only once they are sorted out.
		if m.cfg.OnRegained != nil {
			if err := m.cfg.OnRegained(ctx); err != nil {
				m.log.Warn("cluster: lease renewed, calls not sorted out yet; still not acting for them", "instance", m.cfg.ID, "err", err)
				return
			}
		}
		m.fenced.Store(false)
		m.log.Info("cluster: lease renewed after it had expired; acting for the calls no peer took over", "instance", m.cfg.ID)
	} else if m.down {
		m.log.Info("cluster: lease renewed again", "instance", m.cfg.ID)
	}
	m.down = false

	members, err := m.cfg.Store.Load(ctx, state.Members)
	if err != nil {
		return
	}
	if _, listed := members[m.cfg.ID]; !listed {
		// Taken over while the store was out of reach (the error above
		// was logged): listed again, so that the calls it holds now are
		// taken over if it dies.
		m.cfg.Store.Apply(ctx, []state.Change{{Kind: state.Members, Key: m.cfg.ID, Value: m.rec}})
	}
	live := 1
	downs := map[string]bool{}
	suspects := map[string]bool{}
	var died []string
	for _, id := range sortedKeys(members) {
		if id == m.cfg.ID {
			continue
		}
		alive, err := m.Alive(ctx, id)
		if err != nil {
			return
		}
		if alive {
			live++
			delete(m.dead, id)
			continue
		}
		downs[id] = true
		if !m.suspects[id] {
			suspects[id] = true
			continue
		}
		if !m.dead[id] {
			m.dead[id] = true
			died = append(died, id)
		}
		// On a goroutine of its own: restoring hundreds of calls must not
		// hold up this member's own renewals. One at a time per member;
		// one still running is left alone (its id stays suspect, so the
		// next check tries again if it failed).
		suspects[id] = true
		m.tmu.Lock()
		busy := m.taking[id]
		if !busy {
			m.taking[id] = true
			m.twg.Add(1)
		}
		m.tmu.Unlock()
		if busy {
			continue
		}
		go func() {
			defer m.twg.Done()
			tctx, tcancel := context.WithTimeout(context.Background(), claimTTL/2)
			defer tcancel()
			if _, err := m.takeOver(tctx, id); err != nil {
				m.log.Warn("cluster: takeover not finished; trying again at the next heartbeat", "instance", id, "err", err)
			}
			m.tmu.Lock()
			delete(m.taking, id)
			m.tmu.Unlock()
		}()
	}
	m.suspects = suspects
	m.downSet.Store(&downs)
	if m.cfg.OnDead != nil {
		for _, id := range died {
			m.cfg.OnDead(id)
		}
	}
	if m.cfg.OnMembers != nil {
		m.cfg.OnMembers(live)
	}
}

// Leave stops the heartbeat and gives the lease up. A member that leaves
// with its calls ended (a shutdown) is removed from the list; one that
// leaves calls behind (keepCalls: a handover to the next process) stays
// listed, so that the next process or a peer takes them over at once.
func (m *Member) Leave(ctx context.Context, keepCalls bool) {
	m.halt()
	if !keepCalls {
		m.cfg.Store.Apply(ctx, []state.Change{{Kind: state.Members, Key: m.cfg.ID}})
	}
	m.cfg.Store.Release(ctx, leaseName(m.cfg.ID), m.cfg.ID)
}

// Abandon stops the heartbeat without giving anything up: what a crash
// leaves (tests), the lease expiring on its own.
func (m *Member) Abandon() { m.halt() }

func (m *Member) halt() {
	m.once.Do(func() {
		close(m.stop)
		if m.running.Load() {
			<-m.done
		}
		m.twg.Wait()
	})
}

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/bench/webrtcclient"
)

// Leg combinations.
const (
	legsWebRTC = "webrtc-plain"
	legsPlain  = "plain-plain"
)

// kind is what one measured case relays.
type kind struct {
	legs    string
	profile webrtcclient.Profile // legsWebRTC
	shared  bool                 // plain legs on the relay's shared ports
	io      string               // Strait: the node's I/O mode
	node    string               // Strait: which --node-bin, when several
}

func (k kind) portMode() string {
	if k.shared {
		return "shared"
	}
	return "per-leg"
}

func (k kind) String() string {
	s := k.legs
	if k.io != "" {
		s = k.io + " " + s
	}
	if k.node != "" {
		s = k.node + " " + s
	}
	if k.legs == legsPlain {
		return fmt.Sprintf("%s %s", s, k.portMode())
	}
	return fmt.Sprintf("%s %s %s", s, k.profile.Name, k.portMode())
}

// relay is a target under measurement.
type relay interface {
	target(k kind) string
	pid() int
	// open sets up s: relay session, client leg, flows; it returns once
	// the flows are active (the first media is on its way).
	open(ctx context.Context, k kind, s *session) error
	close(ctx context.Context, s *session) error
	sample() (sample, error)
	// memory is the figure bytes per session is computed from, and what it
	// measures.
	memory() (float64, string, error)
	// saturation says, where the relay tells, why it lost packets since
	// the last call (its own counters or log); "" when it does not.
	saturation() string
}

// sample is a relay's counters at one instant.
type sample struct {
	cpu             time.Duration
	sched           procstat.Sched // the relay's threads' (zero: unknown)
	rss             int64
	hasNodeCounters bool // Strait: forwarded, mallocs and drops are read from its metrics
	forwarded       uint64
	mallocs         float64
	scrapeAllocs    float64 // what one metrics scrape allocates in the node
	drops           map[string]uint64
	// Strait: the workers' own count of their system calls, by call, and
	// their rounds (wake-ups).
	syscalls map[string]uint64
	rounds   uint64
	// hold is the node's hold histogram: cumulative datagrams by upper
	// bound in seconds, +Inf included (strait_dataplane_hold_seconds).
	hold map[float64]float64
	// received is what the harness received so far (every flow): the
	// forwarded count of a relay without counters of its own.
	received uint64
}

// harness is the state of one run shared by every case.
type harness struct {
	cfg      *Config
	engine   *rtpgen.Engine
	ident    *webrtcclient.Identity
	codec    rtpgen.Codec
	progress *report.Progress

	poolMu sync.Mutex
	pool   []*rtpgen.Endpoint // plain endpoints shared by per-leg sessions
	next   int

	legsMu sync.Mutex
	legs   map[*webrtcclient.Leg]bool // connected, for consent

	noSyscalls bool // nothing counts system calls here (said once)
}

// plainPoolSize is how many harness sockets the plain side of per-leg
// sessions shares: the relay's per-leg ports tell the sessions apart, and
// a few sockets let the generator batch many packets per sendmmsg.
const plainPoolSize = 8

func (h *harness) endpoint(s *session) (*rtpgen.Endpoint, error) {
	ep, err := h.engine.Listen(netip.AddrPortFrom(harnessIP, 0))
	if err != nil {
		return nil, err
	}
	s.eps = append(s.eps, ep)
	return ep, nil
}

// plainEndpoint returns the harness socket of a plain leg: one of the
// shared pool, or with shared relay ports (which tell legs apart by the
// peer's address) one of its own.
func (h *harness) plainEndpoint(shared bool, s *session) (*rtpgen.Endpoint, error) {
	if shared {
		return h.endpoint(s)
	}
	h.poolMu.Lock()
	defer h.poolMu.Unlock()
	if len(h.pool) < plainPoolSize {
		ep, err := h.engine.Listen(netip.AddrPortFrom(harnessIP, 0))
		if err != nil {
			return nil, err
		}
		h.pool = append(h.pool, ep)
		return ep, nil
	}
	h.next++
	return h.pool[h.next%len(h.pool)], nil
}

// session is one relay session the harness drives.
type session struct {
	id        string
	open      bool // the relay holds it (close must delete it)
	leg       *webrtcclient.Leg
	eps       []*rtpgen.Endpoint // owned: closed with the session
	flows     []*rtpgen.Flow     // [0]: leg 0 -> leg 1, [1]: leg 1 -> leg 0
	created   int64              // engine clock
	handshake time.Duration
	err       error
}

// addFlows registers the session's two flows: from0 sends to relay0 and
// is expected at to1's socket, and back.
func (s *session) addFlows(h *harness, from0 *rtpgen.Endpoint, relay0 netip.AddrPort, to1 *rtpgen.Endpoint, relay1 netip.AddrPort) error {
	f0, err := h.engine.NewFlow(from0, relay0, to1, h.codec)
	if err != nil {
		return err
	}
	f1, err := h.engine.NewFlow(to1, relay1, from0, h.codec)
	if err != nil {
		return err
	}
	s.flows = []*rtpgen.Flow{f0, f1}
	return nil
}

// activate starts the flows; enc and dec are the client leg's contexts
// (nil for plain legs).
func (s *session) activate(h *harness, enc, dec *srtp.Context) {
	if dec != nil {
		h.engine.SetDecrypt(s.flows[1].Sink, dec)
	}
	h.engine.Activate(s.flows[0], enc)
	h.engine.Activate(s.flows[1], nil)
	if s.leg != nil {
		h.legsMu.Lock()
		h.legs[s.leg] = true
		h.legsMu.Unlock()
	}
}

// firstMedia waits until both flows delivered a packet and returns when
// the first packet from leg 0 arrived (engine clock). A flow with nothing
// through yet sends again every 20 ms, as a 50 packet/s stream would, even
// when the run's rate is lower (scale at 10 000 sessions): a first packet
// that met a relay still finishing its handshake is not waited for at the
// slow rate.
func (s *session) firstMedia(ctx context.Context, h *harness) (int64, error) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for i := 1; ; i++ {
		a, b := s.flows[0].FirstArrival(), s.flows[1].FirstArrival()
		if a != 0 && b != 0 {
			return a, nil
		}
		if i%10 == 0 {
			for _, f := range s.flows {
				if f.FirstArrival() == 0 {
					h.engine.Kick(f)
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("session %s: no media through (leg 0 -> 1: %v, 1 -> 0: %v)", s.id, a != 0, b != 0)
		case <-t.C:
		}
	}
}

// teardown deletes the session on the relay and releases its harness side.
func (h *harness) teardown(ctx context.Context, r relay, s *session) error {
	// Stop sending first: a relay port freed while packets still head for
	// it may be given to the next session, which would latch onto them.
	if len(s.flows) > 0 {
		h.engine.Remove(s.flows...)
	}
	err := r.close(ctx, s)
	if s.leg != nil {
		h.legsMu.Lock()
		delete(h.legs, s.leg)
		h.legsMu.Unlock()
		s.leg.Close()
	}
	for _, ep := range s.eps {
		h.engine.CloseEndpoint(ep)
	}
	return err
}

// consent keeps every connected client leg's consent fresh (RFC 7675):
// each leg gets a check every 5 s, the checks spread over the interval.
func (h *harness) consent(ctx context.Context) {
	const step = 100 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	last := map[*webrtcclient.Leg]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		h.legsMu.Lock()
		var due []*webrtcclient.Leg
		for l := range h.legs {
			at, ok := last[l]
			if !ok {
				// First refresh somewhere in the next interval.
				at = now.Add(-time.Duration(rand.Int64N(int64(webrtcclient.ConsentInterval))))
				last[l] = at
			}
			if now.Sub(at) >= webrtcclient.ConsentInterval {
				due = append(due, l)
				last[l] = now
			}
		}
		for l := range last {
			if !h.legs[l] {
				delete(last, l)
			}
		}
		h.legsMu.Unlock()
		for _, l := range due {
			l.SendConsent()
		}
	}
}

// setupStats describe how a batch of sessions came up.
type setupStats struct {
	n         int
	wall      time.Duration
	latency   []time.Duration // create to first media, per session
	handshake []time.Duration // first ICE check to DTLS done
	cpu       time.Duration   // relay CPU over the batch
}

// openMany brings up sessions ids [from, to) with bounded concurrency. A
// session that fails is returned with its error set.
func (h *harness) openMany(ctx context.Context, r relay, k kind, prefix string, from, to int, label string) ([]*session, setupStats, error) {
	n := to - from
	out := make([]*session, n)
	st := setupStats{n: n}
	before, err := r.sample()
	if err != nil {
		return nil, st, err
	}
	start := time.Now()
	var mu sync.Mutex
	up := 0
	sem := make(chan struct{}, h.cfg.Concurrency)
	var wg sync.WaitGroup
	stopProgress := h.progressLoop(label, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("sessions up %d/%d", up, n)
	}, 0)
	for i := 0; i < n; i++ {
		s := &session{id: fmt.Sprintf("%s-%d", prefix, from+i)}
		out[i] = s
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sctx, cancel := context.WithTimeout(ctx, h.cfg.SetupTimeout)
			defer cancel()
			err := r.open(sctx, k, s)
			var first int64
			if err == nil {
				first, err = s.firstMedia(sctx, h)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.err = err
				return
			}
			up++
			st.latency = append(st.latency, time.Duration(first-s.created))
			if s.handshake > 0 {
				st.handshake = append(st.handshake, s.handshake)
			}
		}()
	}
	wg.Wait()
	st.wall = time.Since(start)
	stopProgress()
	after, err := r.sample()
	if err != nil {
		return out, st, err
	}
	st.cpu = after.cpu - before.cpu
	return out, st, nil
}

// closeAll tears sessions down, a few at a time.
func (h *harness) closeAll(ctx context.Context, r relay, ss []*session) {
	sem := make(chan struct{}, h.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, s := range ss {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			h.teardown(cctx, r, s)
		}()
	}
	wg.Wait()
}

// progressLoop prints label and status() every 250 ms, plus the packet
// rates, until the returned function is called. total is the planned
// duration (0: none).
func (h *harness) progressLoop(label string, status func() string, total time.Duration) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		lastT := time.Now()
		lastS, lastR := h.engine.Totals()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			now := time.Now()
			s, r := h.engine.Totals()
			dt := now.Sub(lastT).Seconds()
			pps := float64(r-lastR) / dt
			loss := 0.0
			if s > lastS {
				loss = max(0, 1-float64(r-lastR)/float64(s-lastS))
			}
			lastT, lastS, lastR = now, s, r
			el := fmt.Sprintf("%.1fs", now.Sub(start).Seconds())
			if total > 0 {
				el += fmt.Sprintf(" / %.1fs", total.Seconds())
			}
			h.progress.Update("%s: %s, %.0f pps, loss %.3f%%, %s", label, status(), pps, 100*loss, el)
		}
	}()
	return func() { close(done); <-finished }
}

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) *float64 { return report.F(float64(d) / 1e6) }

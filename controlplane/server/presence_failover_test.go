package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// presencePBX is a sipgo PBX (siptest) whose presence requests the test
// sees, answered by code (nil: 202 to SUBSCRIBE, 200 to the rest).
type presencePBX struct {
	*siptest.Phone
	mu   sync.Mutex
	seen []*sip.Request // SUBSCRIBE and PUBLISH, in order; nil once taken by next
	more chan struct{}  // a request was added to seen
}

func newPresencePBX(t *testing.T, expires int) *presencePBX {
	t.Helper()
	p, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.SubscribeExpires = expires
	pp := &presencePBX{Phone: p, more: make(chan struct{}, 1)}
	pp.answer(nil)
	return pp
}

// answer sets the answers to SUBSCRIBE and PUBLISH (code 0: the default).
func (p *presencePBX) answer(code func(*sip.Request) int) {
	p.SetReply(func(req *sip.Request) int {
		if req.Method != sip.SUBSCRIBE && req.Method != sip.PUBLISH {
			return 200
		}
		p.mu.Lock()
		p.seen = append(p.seen, req)
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
		if code != nil {
			if c := code(req); c != 0 {
				return c
			}
		}
		if req.Method == sip.SUBSCRIBE {
			return 202
		}
		return 200
	})
}

// next waits for the first SUBSCRIBE (or PUBLISH) for user, whose
// Expires is, or is not, 0, that next has not returned yet.
func (p *presencePBX) next(t *testing.T, method sip.RequestMethod, user string, unsubscribe bool, within time.Duration) *sip.Request {
	t.Helper()
	deadline := time.After(within)
	for {
		p.mu.Lock()
		for i, r := range p.seen {
			if r == nil {
				continue
			}
			exp := r.GetHeader("Expires")
			if r.Method == method && r.To().Address.User == user && (exp != nil && exp.Value() == "0") == unsubscribe {
				p.seen[i] = nil
				p.mu.Unlock()
				return r
			}
		}
		p.mu.Unlock()
		select {
		case <-p.more:
		case <-deadline:
			t.Fatalf("%s: no %s for %s (unsubscribe %v) within %v", p.Addr, method, user, unsubscribe, within)
		}
	}
}

// presenceEvents follows token's presence events for user.
func presenceEvents(t *testing.T, ctx context.Context, base, token, user string) <-chan presence.State {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events/presence?user="+user, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("presence events: %v %v", res, err)
	}
	out := make(chan presence.State, 64)
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var s presence.State
				json.Unmarshal([]byte(d), &s)
				out <- s
			}
		}
	}()
	return out
}

// awaitStatus reads events until user's status is status.
func awaitStatus(t *testing.T, ctx context.Context, ch <-chan presence.State, user, status string) {
	t.Helper()
	for {
		select {
		case s := <-ch:
			if s.User == user && s.Status == status {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s never became %s", user, status)
		}
	}
}

// notify sends a NOTIFY with user's PIDF status in the subscription sub
// made at pbx.
func notify(t *testing.T, pbx *presencePBX, sub *sip.Request, user, status string) {
	t.Helper()
	body := presence.EncodePIDF("sip:"+user+"@pbx", presence.State{User: user, Status: status})
	if res, err := pbx.Notify(ctx(t), sub, "active;expires=600", body, "application/pidf+xml"); err != nil || res.StatusCode != 200 {
		t.Fatalf("NOTIFY from %s: %v %v", pbx.Addr, res, err)
	}
}

// Presence toward two upstream targets (trunk mode, OPTIONS pings on):
//   - the first answers OPTIONS but 503 to SUBSCRIBE and PUBLISH: the
//     watch of alice and bob's publication fail over to the second (the
//     same Call-ID), whose NOTIFY reaches the watcher's stream;
//   - once the first takes SUBSCRIBE again, the subscription goes back to
//     it at its next refresh (the second's Expires is 2 s): unsubscribed
//     at the second, subscribed at the first;
//   - the first dies: its pings fail, and alice is subscribed to again at
//     the second at once, without waiting for a refresh; its NOTIFY
//     reaches the stream. Each move is counted.
func TestPresenceFailover(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-app", "alice", []string{apiauth.ScopeUser})
	bob, bobKey, _ := apiauth.NewToken("bob-app", "bob", []string{apiauth.ScopeUser})
	first, second := newPresencePBX(t, 600), newPresencePBX(t, 2)
	first.answer(func(*sip.Request) int { return 503 })
	e := start(t, func(c *config.Config) {
		c.Upstream = []string{"sip:" + first.Addr + ";priority=1", "sip:" + second.Addr + ";priority=2"}
		c.OptionsInterval = 300 * time.Millisecond
		c.APIKeys = []string{aliceKey, bobKey}
	})
	base := "http://" + e.srv.HTTPAddr()
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	moved := func() float64 {
		return metricValue(t, e.srv.Metrics.Registry, "strait_presence_upstream_total", map[string]string{"request": "subscribe", "result": "moved"})
	}

	events := presenceEvents(t, sctx, base, bob, "alice")
	refused := first.next(t, sip.SUBSCRIBE, "alice", false, 10*time.Second)
	sub := second.next(t, sip.SUBSCRIBE, "alice", false, 10*time.Second)
	if sub.CallID().Value() != refused.CallID().Value() {
		t.Errorf("the failover changed the dialog: Call-ID %s -> %s", refused.CallID().Value(), sub.CallID().Value())
	}
	// From now on the first takes subscriptions again (not PUBLISH):
	// the subscription goes back at the second's refresh (in 1.6 s).
	first.answer(func(r *sip.Request) int {
		if r.Method == sip.PUBLISH {
			return 503
		}
		return 0
	})
	notify(t, second, sub, "alice", "busy")
	awaitStatus(t, sctx, events, "alice", "busy")
	if code, b := apiCall(t, base, alice, "PUT", "/v1/presence", `{"status":"away"}`); code != 200 {
		t.Fatalf("PUT presence: %d %s", code, b)
	}
	first.next(t, sip.PUBLISH, "alice", false, 10*time.Second)
	second.next(t, sip.PUBLISH, "alice", false, 10*time.Second)

	// Back to the first at the second's refresh.
	second.next(t, sip.SUBSCRIBE, "alice", true, 10*time.Second)
	back := first.next(t, sip.SUBSCRIBE, "alice", false, 10*time.Second)
	notify(t, first, back, "alice", "dnd")
	awaitStatus(t, sctx, events, "alice", "dnd")
	if n := moved(); n != 1 {
		t.Fatalf("moves counted: %v, want 1", n)
	}

	// The first dies: alice is subscribed to at the second within the
	// pings' notice, long before the first's 600 s would need a refresh.
	died := time.Now()
	first.Close()
	again := second.next(t, sip.SUBSCRIBE, "alice", false, 15*time.Second)
	t.Logf("subscribed again at the second %v after the first died", time.Since(died).Round(time.Millisecond))
	notify(t, second, again, "alice", "available")
	awaitStatus(t, sctx, events, "alice", "available")
	if n := moved(); n != 2 {
		t.Fatalf("moves counted: %v, want 2", n)
	}
}

// The first upstream target is dead (it answers nothing, and no OPTIONS
// pings mark it down): the SUBSCRIBE of a watched user and a PUBLISH each
// wait noResponse for it, then go to the second, and its NOTIFY reaches
// the watcher.
func TestPresenceFailoverDeadFirst(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-app", "alice", []string{apiauth.ScopeUser})
	bob, bobKey, _ := apiauth.NewToken("bob-app", "bob", []string{apiauth.ScopeUser})
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	second := newPresencePBX(t, 600)
	e := start(t, func(c *config.Config) {
		c.Upstream = []string{"sip:" + dead.LocalAddr().String() + ";priority=1", "sip:" + second.Addr + ";priority=2"}
		c.APIKeys = []string{aliceKey, bobKey}
	})
	base := "http://" + e.srv.HTTPAddr()
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	events := presenceEvents(t, sctx, base, bob, "alice")
	sub := second.next(t, sip.SUBSCRIBE, "alice", false, 20*time.Second)
	if took := time.Since(start); took < noResponse {
		t.Errorf("the SUBSCRIBE reached the second after %v, before the first's %v", took, noResponse)
	}
	notify(t, second, sub, "alice", "busy")
	awaitStatus(t, sctx, events, "alice", "busy")
	if code, b := apiCall(t, base, alice, "PUT", "/v1/presence", `{"status":"away"}`); code != 200 {
		t.Fatalf("PUT presence: %d %s", code, b)
	}
	second.next(t, sip.PUBLISH, "alice", false, 20*time.Second)
}

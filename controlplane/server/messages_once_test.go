package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// streamedMessage is one "message" event of GET /v1/events/messages.
type streamedMessage struct {
	ID, From, To, Text, Via string
}

// messageStream opens token's message event stream on base; the events
// come on the channel until ctx ends.
func messageStream(t *testing.T, ctx context.Context, base, token string) <-chan streamedMessage {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events/messages", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", res, err)
	}
	out := make(chan streamedMessage, 64)
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m streamedMessage
				json.Unmarshal([]byte(d), &m)
				out <- m
			}
		}
	}()
	return out
}

// Two standalone control planes on one real redis-server: bob's API
// listener is on b, alice sends from a (bob has no browser: the SIP side
// answers 480, so a keeps what nobody took there). Each message reaches
// bob exactly once, whichever of b's live delivery and a's mailbox
// claimed it first (messaging/claim.go): the answer says "delivered" (b
// delivered it live; a counts it taken_live) or "stored" (a's mailbox
// claimed it; b's mailbox hands it to the listener at once), nothing is
// left in the mailbox, and polling finds nothing. Bob's SIP browser,
// registering on a afterwards, gets nothing either; the same holds for
// a SIP MESSAGE sent to bob on a.
func TestMessagesOnceAcrossControlPlanes(t *testing.T) {
	rd := statetest.StartRedis(t)
	st, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	bobTok, bobKey, _ := apiauth.NewToken("bob-web", "bob", []string{apiauth.ScopeUser})
	member := func(id string) *env {
		return startOpts(t, func(c *config.Config) {
			c.Users = []string{"alice:a-secret", "bob:b-secret", "carol:c-secret"}
			c.APIKeys = []string{aliceKey, bobKey}
			c.InstanceID = id
			c.MaxMessagesPerMinute = 0
		}, func(o *Options) { o.Store = sharedStore{st} })
	}
	a, b := member("cp-a"), member("cp-b")
	baseA, baseB := "http://"+a.srv.HTTPAddr(), "http://"+b.srv.HTTPAddr()
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bob := messageStream(t, sctx, baseB, bobTok)
	waitUntil(t, func() bool { return b.srv.Messages.Listening("bob") })

	const n = 8
	sent := map[string]string{} // id -> delivery
	for i := range n {
		code, body := apiCall(t, baseA, alice, "POST", "/v1/messages", fmt.Sprintf(`{"to":"bob","text":"m%d"}`, i))
		var out struct{ ID, Delivery string }
		json.Unmarshal(body, &out)
		if (code != 201 || out.Delivery != "delivered") && (code != 202 || out.Delivery != "stored") {
			t.Fatalf("message %d: %d %s", i, code, body)
		}
		sent[out.ID] = out.Delivery
	}
	// A SIP MESSAGE to bob on a, from carol's browser there.
	carol := registered(t, a, "carol", "c-secret")
	res, err := carol.Send(ctx(t), sip.MESSAGE, "bob", []byte("from SIP"), "text/plain;charset=UTF-8")
	if err != nil || (res.StatusCode != 200 && res.StatusCode != 202) {
		t.Fatalf("carol's MESSAGE to bob: %v %v", res, err)
	}
	got := map[string]int{}
	fromSIP := 0
	for len(got) < n || fromSIP == 0 {
		select {
		case m := <-bob:
			if m.Via == "sip" && m.Text == "from SIP" {
				fromSIP++
				continue
			}
			if _, ok := sent[m.ID]; !ok {
				t.Fatalf("bob got an unknown message %+v", m)
			}
			got[m.ID]++
		case <-sctx.Done():
			t.Fatalf("bob got %d of %d messages (%d from SIP)", len(got), n, fromSIP)
		}
	}
	// Nothing is left kept, on either control plane.
	waitUntil(t, func() bool { return a.srv.Mailbox.Waiting("bob") == 0 && b.srv.Mailbox.Waiting("bob") == 0 })
	if recs, _ := st.Load(ctx(t), "offline_messages"); len(recs) != 0 {
		t.Fatalf("the store still keeps %d messages", len(recs))
	}
	// A sentinel sent on b (bob listens there: delivered live, never
	// kept) comes after every copy that was on its way.
	if code, body := apiCall(t, baseB, alice, "POST", "/v1/messages", `{"to":"bob","text":"sentinel"}`); code != 201 {
		t.Fatalf("sentinel: %d %s", code, body)
	}
	for done := false; !done; {
		select {
		case m := <-bob:
			switch {
			case m.Text == "sentinel":
				done = true
			case m.Via == "sip":
				fromSIP++
			default:
				got[m.ID]++
			}
		case <-sctx.Done():
			t.Fatal("the sentinel did not come")
		}
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("message %s (%s) came %d times", id, sent[id], c)
		}
	}
	if fromSIP != 1 {
		t.Errorf("the SIP message came %d times", fromSIP)
	}
	stored, live := 0, 0
	for _, d := range sent {
		if d == "stored" {
			stored++
		} else {
			live++
		}
	}
	t.Logf("%d delivered live, %d kept first and handed over; taken_live on a: %v, yielded on b: %d",
		live, stored, a.srv.Mailbox.Count("taken_live"), b.srv.Messages.Yielded())
	if code, body := apiCall(t, baseA, bobTok, "GET", "/v1/messages", ""); code != 200 || string(body) != "{\"messages\":[]}\n" {
		t.Fatalf("bob's poll on a: %d %s", code, body)
	}
	// Bob's browser registering on a gets nothing kept.
	browser := registered(t, a, "bob", "b-secret")
	if m, err := browser.WaitRequest(sip.MESSAGE, 500*time.Millisecond); err == nil {
		t.Fatalf("bob's browser got a message already delivered: %s", m.Body())
	}
}

// One sender floods offline users' mailboxes (an attack within its
// message rate): past its share (--offline-messages-per-sender) its
// messages are refused with 507 sender-share-full and counted in
// strait_messages_offline_total{event="refused_sender"}, while another
// sender's message to the same offline user is still kept (202) and
// delivered when the user polls. The flood is bounded in count.
func TestMailboxFloodBySender(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	mallory, malloryKey, _ := apiauth.NewToken("mallory-web", "mallory", []string{apiauth.ScopeUser})
	bob, bobKey, _ := apiauth.NewToken("bob-web", "bob", []string{apiauth.ScopeUser})
	const share, flood = 20, 60
	e := start(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret", "carol:c-secret", "mallory:m-secret"}
		c.APIKeys = []string{aliceKey, malloryKey, bobKey}
		c.MaxMessagesPerMinute = 0
		c.OfflineMessagesPerSender = share
		c.HTTPRate = 0 // the flood comes from one address: the sender share is under test, not the address limit
	})
	base := "http://" + e.srv.HTTPAddr()
	refused := 0
	for i := range flood {
		to := []string{"bob", "carol"}[i%2]
		code, body := apiCall(t, base, mallory, "POST", "/v1/messages", fmt.Sprintf(`{"to":%q,"text":"spam %d"}`, to, i))
		switch {
		case i < share && code != 202:
			t.Fatalf("mallory's message %d within its share: %d %s", i, code, body)
		case i >= share && (code != 507 || !strings.Contains(string(body), "sender-share-full")):
			t.Fatalf("mallory's message %d past its share: %d %s", i, code, body)
		case code == 507:
			refused++
		}
	}
	count := func(event string) float64 {
		return metricValue(t, e.srv.Metrics.Registry, "strait_messages_offline_total", map[string]string{"event": event})
	}
	if got := count("refused_sender"); got != float64(refused) || refused != flood-share {
		t.Fatalf("refused_sender: %v, refused %d, want %d", got, refused, flood-share)
	}
	// Alice's message to bob, during the flood, is kept and delivered.
	code, body := apiCall(t, base, alice, "POST", "/v1/messages", `{"to":"bob","text":"a real one"}`)
	if code != 202 || !strings.Contains(string(body), `"delivery":"stored"`) {
		t.Fatalf("alice's message during the flood: %d %s", code, body)
	}
	code, body = apiCall(t, base, bob, "GET", "/v1/messages", "")
	var kept struct{ Messages []streamedMessage }
	json.Unmarshal(body, &kept)
	found := 0
	for _, m := range kept.Messages {
		if m.From == "alice" && m.Text == "a real one" {
			found++
		}
	}
	if code != 200 || found != 1 || len(kept.Messages) != share/2+1 {
		t.Fatalf("bob's poll: %d, %d messages, alice's %d times", code, len(kept.Messages), found)
	}
	// Bob's mailbox emptied, mallory's share is partly free again.
	if got := e.srv.Mailbox.Sent("mallory"); got != share/2 {
		t.Fatalf("mallory has %d waiting, want %d", got, share/2)
	}
	if code, body := apiCall(t, base, mallory, "POST", "/v1/messages", `{"to":"bob","text":"again"}`); code != 202 {
		t.Fatalf("mallory once some of hers were delivered: %d %s", code, body)
	}
}

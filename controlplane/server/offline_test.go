package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
)

// apiCall sends an API request with a bearer token and returns the status
// and body.
func apiCall(t *testing.T, base, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// Instant messages to offline users are kept in the embedded store and
// delivered when the user comes online:
//   - alice's API message to bob (no browser, no listener) is answered 202
//     "stored"; Strait restarts on the same data directory; bob's browser
//     registers (sipgo over WebSocket) and gets it as a SIP MESSAGE from
//     alice with a Date header, and it is gone from the mailbox;
//   - bob's browser MESSAGE to alice (no listener, no registration) is
//     answered 202 (RFC 3428 section 7); alice's event stream, when it
//     opens, delivers it first; another is fetched by polling GET
//     /v1/messages, once;
//   - past --offline-messages for carol, the API answers 507 and SIP 480,
//     each counted; unknown users' messages are not kept (404 stands).
func TestOfflineMessages(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	dir := t.TempDir()
	mutate := func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret", "carol:c-secret"}
		c.APIKeys = []string{aliceKey}
		c.State, c.DataDir = "embedded", dir
		c.OfflineMessages = 2
	}
	e := start(t, mutate)
	base := "http://" + e.srv.HTTPAddr()
	code, b := apiCall(t, base, alice, "POST", "/v1/messages", `{"to":"bob","text":"while you were out"}`)
	var sent struct {
		ID        string
		SIPStatus int `json:"sip_status"`
		Delivery  string
	}
	if json.Unmarshal(b, &sent); code != 202 || sent.Delivery != "stored" || sent.SIPStatus != 480 {
		t.Fatalf("message to offline bob: %d %s", code, b)
	}
	if n := e.srv.Mailbox.Count("stored"); n != 1 {
		t.Fatalf("stored: %v", n)
	}
	e.srv.Close()

	// The next process, on the same embedded store.
	e = start(t, mutate)
	base = "http://" + e.srv.HTTPAddr()
	if e.srv.Mailbox.Waiting("bob") != 1 {
		t.Fatalf("after the restart bob has %d waiting", e.srv.Mailbox.Waiting("bob"))
	}
	bob := registered(t, e, "bob", "b-secret")
	msg, err := bob.WaitRequest(sip.MESSAGE, 10*time.Second)
	if err != nil || string(msg.Body()) != "while you were out" || msg.From().Address.User != "alice" || msg.GetHeader("Date") == nil {
		t.Fatalf("bob's browser, once registered: %v %v", msg, err)
	}
	waitUntil(t, func() bool { return e.srv.Mailbox.Waiting("bob") == 0 && e.srv.Mailbox.Count("delivered") == 1 })

	// SIP to an offline API user, then the event stream.
	for _, text := range []string{"first, from SIP", "second, from SIP"} {
		res, err := bob.Send(ctx(t), sip.MESSAGE, "alice", []byte(text), "text/plain;charset=UTF-8")
		if err != nil || res.StatusCode != 202 {
			t.Fatalf("bob's MESSAGE to offline alice: %v %v", res, err)
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, "GET", base+"/v1/events/messages", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", res, err)
	}
	var got []string
	sc := bufio.NewScanner(res.Body)
	for len(got) < 2 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var m struct{ From, Text, Via string }
			json.Unmarshal([]byte(d), &m)
			if m.From != "bob" || m.Via != "sip" {
				t.Fatalf("alice's stream: %s", d)
			}
			got = append(got, m.Text)
		}
	}
	res.Body.Close()
	if len(got) != 2 || got[0] != "first, from SIP" || got[1] != "second, from SIP" {
		t.Fatalf("alice's stream carried %q", got)
	}
	waitUntil(t, func() bool { return e.srv.Mailbox.Waiting("alice") == 0 })

	// Polling.
	waitUntil(t, func() bool { return !e.srv.Messages.Listening("alice") })
	if res, err := bob.Send(ctx(t), sip.MESSAGE, "alice", []byte("polled"), "text/plain"); err != nil || res.StatusCode != 202 {
		t.Fatalf("bob's MESSAGE to alice, offline again: %v %v", res, err)
	}
	if code, b := apiCall(t, base, alice, "GET", "/v1/messages", ""); code != 200 || !strings.Contains(string(b), `"text":"polled"`) {
		t.Fatalf("poll: %d %s", code, b)
	}
	if code, b := apiCall(t, base, alice, "GET", "/v1/messages", ""); code != 200 || string(b) != "{\"messages\":[]}\n" {
		t.Fatalf("second poll: %d %s", code, b)
	}

	// Limits: carol's mailbox holds 2.
	for i := 0; i < 2; i++ {
		if code, b := apiCall(t, base, alice, "POST", "/v1/messages", `{"to":"carol","text":"hello"}`); code != 202 {
			t.Fatalf("message %d to carol: %d %s", i, code, b)
		}
	}
	if code, b := apiCall(t, base, alice, "POST", "/v1/messages", `{"to":"carol","text":"one too many"}`); code != 507 ||
		!strings.Contains(string(b), "mailbox-full") {
		t.Fatalf("past carol's limit: %d %s", code, b)
	}
	if res, err := bob.Send(ctx(t), sip.MESSAGE, "carol", []byte("one too many"), "text/plain"); err != nil || res.StatusCode != 480 {
		t.Fatalf("SIP past carol's limit: %v %v", res, err)
	}
	if n := e.srv.Mailbox.Count("refused_full"); n != 2 {
		t.Fatalf("refused_full: %v", n)
	}
	if got := metricValue(t, e.srv.Metrics.Registry, "strait_messages_offline_total", map[string]string{"event": "refused_full"}); got != 2 {
		t.Fatalf("strait_messages_offline_total{event=refused_full}: %v", got)
	}
	// Unknown users: nothing kept.
	if res, err := bob.Send(ctx(t), sip.MESSAGE, "nobody", []byte("anyone?"), "text/plain"); err != nil || res.StatusCode != 404 {
		t.Fatalf("SIP MESSAGE to nobody: %v %v", res, err)
	}
	if code, b := apiCall(t, base, alice, "POST", "/v1/messages", `{"to":"nobody","text":"anyone?"}`); code != 201 ||
		!strings.Contains(string(b), `"delivery":"undelivered"`) {
		t.Fatalf("API message to nobody: %d %s", code, b)
	}
	// Is-composing notices are not kept.
	if res, err := bob.Send(ctx(t), sip.MESSAGE, "alice", []byte(`<?xml version="1.0"?><isComposing/>`), "application/im-iscomposing+xml"); err != nil || res.StatusCode != 480 {
		t.Fatalf("is-composing to offline alice: %v %v", res, err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
	}
}

// In trunk mode a MESSAGE from the PBX for one of Strait's users who has
// no registration (an address-book user) is kept (202) and delivered when
// the user's browser registers through Strait; one for a user Strait does
// not know keeps the routing's answer (480: not kept).
func TestOfflineMessageFromPBX(t *testing.T) {
	book := filepath.Join(t.TempDir(), "contacts.yaml")
	if err := os.WriteFile(book, []byte("- {user: alice, name: Alice}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := startTrunkWith(t, func(c *config.Config) { c.ContactsFile = book })
	if r, err := tr.pbx.Send(ctx(t), sip.MESSAGE, "alice", []byte("call the front desk"), "text/plain"); err != nil || r.StatusCode != 202 {
		t.Fatalf("the PBX's MESSAGE to offline alice: %v %v", r, err)
	}
	if r, err := tr.pbx.Send(ctx(t), sip.MESSAGE, "zed", []byte("anyone?"), "text/plain"); err != nil || r.StatusCode != 480 {
		t.Fatalf("the PBX's MESSAGE to unknown zed: %v %v", r, err)
	}
	tr.register(t)
	m, err := tr.browser.WaitRequest(sip.MESSAGE, 10*time.Second)
	if err != nil || string(m.Body()) != "call the front desk" || m.From().Address.User != "pbx" || m.GetHeader("Date") == nil {
		t.Fatalf("alice's browser, once registered: %v %v", m, err)
	}
	waitUntil(t, func() bool { return tr.srv.Mailbox.Waiting("alice") == 0 && tr.srv.Mailbox.Count("delivered") == 1 })
	if n := tr.srv.Mailbox.Count("refused_unknown"); n != 1 {
		t.Fatalf("refused_unknown: %v", n)
	}
}

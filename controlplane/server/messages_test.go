package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
)

// Instant messages both ways between the HTTP API and SIP: a registered
// browser's MESSAGE reaches alice's API listener (alice has no
// registration: the listener taking it makes the 200); alice's POST
// /v1/messages reaches bob's registered browser as a SIP MESSAGE and bob's
// own API listener; a message to nobody says so in sip_status.
func TestMessagesBetweenAPIAndSIP(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	bobTok, bobKey, _ := apiauth.NewToken("bob-web", "bob", []string{apiauth.ScopeUser})
	carol, carolKey, _ := apiauth.NewToken("carol-web", "carol", []string{apiauth.ScopeCall})
	e := start(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret"}
		c.APIKeys = []string{aliceKey, bobKey, carolKey}
	})
	base := "http://" + e.srv.HTTPAddr()
	do := func(token, method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	listen := func(token string) <-chan map[string]any {
		req, _ := http.NewRequestWithContext(cctx, "GET", base+"/v1/events/messages", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("events: %v %v", res, err)
		}
		out := make(chan map[string]any, 8)
		go func() {
			defer res.Body.Close()
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var m map[string]any
					json.Unmarshal([]byte(d), &m)
					out <- m
				}
			}
		}()
		return out
	}
	next := func(ch <-chan map[string]any, what string) map[string]any {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-cctx.Done():
			t.Fatalf("%s: nothing arrived", what)
		}
		return nil
	}
	aliceIn, bobIn := listen(alice), listen(bobTok)
	bob := registered(t, e, "bob", "b-secret")

	// SIP to the API. The bus subscription starts with the server: by now
	// it is up (the listeners answered after it).
	res, err := bob.Send(ctx(t), sip.MESSAGE, "alice", []byte("hello from a browser"), "text/plain;charset=UTF-8")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("bob's MESSAGE to alice: %v %v", res, err)
	}
	if m := next(aliceIn, "alice's listener"); m["from"] != "bob" || m["text"] != "hello from a browser" || m["via"] != "sip" {
		t.Fatalf("alice got %v", m)
	}

	// The API to SIP and to the recipient's API listener.
	code, b := do(alice, "POST", "/v1/messages", `{"to":"bob","text":"hi bob"}`)
	var sent struct {
		ID        string
		SIPStatus int `json:"sip_status"`
	}
	if json.Unmarshal(b, &sent); code != 201 || sent.SIPStatus != 200 || sent.ID == "" {
		t.Fatalf("alice's message: %d %s", code, b)
	}
	msg, err := bob.WaitRequest(sip.MESSAGE, 5*time.Second)
	if err != nil || string(msg.Body()) != "hi bob" || msg.From().Address.User != "alice" {
		t.Fatalf("bob's browser: %v %v", msg, err)
	}
	if m := next(bobIn, "bob's listener"); m["from"] != "alice" || m["text"] != "hi bob" || m["via"] != "api" || m["id"] != sent.ID {
		t.Fatalf("bob's listener got %v", m)
	}

	// Nobody there: said in sip_status; a SIP MESSAGE to nobody is refused.
	if code, b := do(alice, "POST", "/v1/messages", `{"to":"nobody","text":"anyone?"}`); code != 201 ||
		(!strings.Contains(string(b), `"sip_status":404`) && !strings.Contains(string(b), `"sip_status":480`)) {
		t.Fatalf("message to nobody: %d %s", code, b)
	}
	if res, err := bob.Send(ctx(t), sip.MESSAGE, "nobody", []byte("anyone?"), "text/plain"); err != nil || res.StatusCode < 400 {
		t.Fatalf("SIP MESSAGE to nobody: %v %v", res, err)
	}
	for _, tc := range []struct {
		name, token, body string
		status            int
	}{
		{"empty text", alice, `{"to":"bob","text":""}`, 400},
		{"no to", alice, `{"text":"x"}`, 400},
		{"long text", alice, `{"to":"bob","text":"` + strings.Repeat("x", 4097) + `"}`, 400},
		{"from in the body", alice, `{"to":"bob","text":"x","from":"bob"}`, 400},
		{"no user scope", carol, `{"to":"bob","text":"x"}`, 403},
		{"no token", "wrong", `{"to":"bob","text":"x"}`, 401},
	} {
		if code, b := do(tc.token, "POST", "/v1/messages", tc.body); code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, code, b, tc.status)
		}
	}
}

// Each user's API messages are rate limited (--max-messages-per-minute):
// past the burst 429 with Retry-After, counted; another user is not
// affected.
func TestMessageRateLimit(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-web", "alice", []string{apiauth.ScopeUser})
	bob, bobKey, _ := apiauth.NewToken("bob-web", "bob", []string{apiauth.ScopeUser})
	e := start(t, func(c *config.Config) {
		c.APIKeys = []string{aliceKey, bobKey}
		c.MaxMessagesPerMinute = 3
	})
	send := func(token string) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+e.srv.HTTPAddr()+"/v1/messages", strings.NewReader(`{"to":"carol","text":"spam?"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header
	}
	for i := 0; i < 3; i++ {
		if code, _ := send(alice); code != 201 {
			t.Fatalf("message %d: %d", i+1, code)
		}
	}
	code, h := send(alice)
	if code != 429 || h.Get("Retry-After") != "20" {
		t.Fatalf("past the limit: %d, Retry-After %q; want 429, 20", code, h.Get("Retry-After"))
	}
	if code, _ := send(bob); code != 201 {
		t.Fatalf("bob, limited by alice: %d", code)
	}
	if got := metricValue(t, e.srv.Metrics.Registry, "strait_http_refused_total", map[string]string{"reason": "message_rate"}); got != 1 {
		t.Fatalf("refusals counted: %v, want 1", got)
	}
}

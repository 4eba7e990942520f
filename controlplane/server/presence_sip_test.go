package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
)

// A PBX without presence (it answers SUBSCRIBE with 489 Bad Event and
// has no PUBLISH: 405) in trunk mode: Strait tries once each, counts
// them unsupported, stops asking, and presence stays Strait's own: bob,
// watching alice, hears what alice publishes through the API, and the
// API answers as before. (The bridge against a real presence server is
// tests/e2e TestPresenceThroughPBX, with Kamailio.)
func TestPresenceWithoutPBXPresence(t *testing.T) {
	alice, aliceKey, _ := apiauth.NewToken("alice-app", "alice", []string{apiauth.ScopeUser})
	bob, bobKey, _ := apiauth.NewToken("bob-app", "bob", []string{apiauth.ScopeUser})
	tr := startTrunkWith(t, func(c *config.Config) { c.APIKeys = []string{aliceKey, bobKey} })
	tr.pbx.SetReply(func(req *sip.Request) int {
		switch req.Method {
		case sip.SUBSCRIBE:
			return 489
		case sip.PUBLISH:
			return 405
		}
		return 200
	})
	base := "http://" + tr.srv.HTTPAddr()
	count := func(request, result string) float64 {
		return metricValue(t, tr.srv.Metrics.Registry, "strait_presence_upstream_total", map[string]string{"request": request, "result": result})
	}
	sctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	req, _ := http.NewRequestWithContext(sctx, "GET", base+"/v1/events/presence?user=alice", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("bob's stream: %v %v", res, err)
	}
	defer res.Body.Close()
	sub, err := tr.pbx.WaitRequest(sip.SUBSCRIBE, 5*time.Second)
	if err != nil || sub.GetHeader("Event").Value() != "presence" || sub.Recipient.User != "alice" {
		t.Fatalf("the PBX's SUBSCRIBE: %v %v", sub, err)
	}
	waitUntil(t, func() bool { return count("subscribe", "unsupported") == 1 })

	if code, b := apiCall(t, base, alice, "PUT", "/v1/presence", `{"status":"dnd","note":"focus"}`); code != 200 {
		t.Fatalf("PUT presence: %d %s", code, b)
	}
	waitUntil(t, func() bool { return count("publish", "unsupported") == 1 })
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var p struct{ User, Status, Note string }
			json.Unmarshal([]byte(d), &p)
			if p.User != "alice" || p.Status != "dnd" || p.Note != "focus" {
				t.Fatalf("bob sees %s", d)
			}
			break
		}
	}
	// Once refused, the PBX is not asked again for a while.
	if code, _ := apiCall(t, base, alice, "PUT", "/v1/presence", `{"status":"available"}`); code != 200 {
		t.Fatalf("second PUT: %d", code)
	}
	if code, b := apiCall(t, base, alice, "GET", "/v1/presence/alice", ""); code != 200 || !strings.Contains(string(b), `"available"`) {
		t.Fatalf("GET presence: %d %s", code, b)
	}
	time.Sleep(200 * time.Millisecond) // nothing to await: a PUBLISH that is not sent
	if n := count("publish", "unsupported") + count("publish", "ok") + count("publish", "failed"); n != 1 {
		t.Fatalf("PUBLISHes answered: %v, want 1", n)
	}
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Presence bridged to a real presence server in trunk mode (Kamailio with
// its presence and presence_xml modules as the PBX's presence service):
//   - alice publishes through the API; bob watches her through the API
//     (GET /v1/events/presence?user=alice): Strait SUBSCRIBEs at Kamailio,
//     whose NOTIFY carries the PIDF Strait PUBLISHed; alice's next change
//     goes out as a PUBLISH modifying it and comes back in a NOTIFY;
//   - carol's SIP phone (sipp) publishes to Kamailio directly (on the
//     phone, RPID): bob, watching carol through Strait, sees her busy
//     with her note;
//   - the publications, subscriptions and NOTIFYs are counted.
func TestPresenceThroughPBX(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedKamailioPresence, harness.NeedSipp)
	ps := e.StartPresenceServer("kamailio-presence")
	alice, aliceKey, err := apiauth.NewToken("alice-app", "alice", []string{apiauth.ScopeUser})
	if err != nil {
		t.Fatal(err)
	}
	bob, bobKey, _ := apiauth.NewToken("bob-app", "bob", []string{apiauth.ScopeUser})
	s := e.StartStrait(harness.StraitConfig{Token: "operator", Upstream: upstream(ps.Addr()),
		Args: []string{"--api-key", aliceKey, "--api-key", bobKey}})
	put := func(ctx context.Context, status, note string) error {
		body := fmt.Sprintf(`{"status":%q,"note":%q}`, status, note)
		req, _ := http.NewRequestWithContext(ctx, "PUT", s.URL()+"/v1/presence", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("PUT /v1/presence: %s", res.Status)
		}
		return nil
	}
	counted := func(ctx context.Context, request, result string, atLeast float64) error {
		for {
			m, err := s.Metrics(ctx)
			if err == nil && m.Values[`strait_presence_upstream_total{request="`+request+`",result="`+result+`"}`] >= atLeast {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("strait_presence_upstream_total{request=%q,result=%q} below %v: %v", request, result, atLeast, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	e.Step("alice publishes busy through the API: Strait PUBLISHes to Kamailio", 10*time.Second, func(ctx context.Context) error {
		if err := put(ctx, "busy", "in a meeting"); err != nil {
			return err
		}
		return counted(ctx, "publish", "ok", 1)
	})

	// bob's stream, watching alice and carol.
	sctx, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	req, _ := http.NewRequestWithContext(sctx, "GET", s.URL()+"/v1/events/presence?user=alice&user=carol", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("bob's presence stream: %v %v", res, err)
	}
	defer res.Body.Close()
	type shown struct{ User, Status, Note string }
	events := make(chan shown, 32)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var p shown
				json.Unmarshal([]byte(d), &p)
				events <- p
			}
		}
		close(events)
	}()
	await := func(ctx context.Context, want shown) error {
		for {
			select {
			case p, ok := <-events:
				if !ok {
					return fmt.Errorf("the stream ended before %+v", want)
				}
				e.T().Logf("bob sees %+v", p)
				if p == want {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("bob never saw %+v: %w", want, ctx.Err())
			}
		}
	}
	e.Step("bob watches alice: Strait SUBSCRIBEs, Kamailio's NOTIFY shows her busy", 15*time.Second, func(ctx context.Context) error {
		if err := await(ctx, shown{"alice", "busy", "in a meeting"}); err != nil {
			return err
		}
		return counted(ctx, "notify", "ok", 1)
	})
	e.Step("alice goes away: a PUBLISH modifies hers, Kamailio NOTIFYs it", 15*time.Second, func(ctx context.Context) error {
		m, err := s.Metrics(ctx)
		if err != nil {
			return err
		}
		notifies := m.Values[`strait_presence_upstream_total{request="notify",result="ok"}`]
		if err := put(ctx, "away", "back at three"); err != nil {
			return err
		}
		if err := await(ctx, shown{"alice", "away", "back at three"}); err != nil {
			return err
		}
		if err := counted(ctx, "publish", "ok", 2); err != nil {
			return err
		}
		return counted(ctx, "notify", "ok", notifies+1) // Kamailio notified the change
	})
	e.Step("carol's SIP phone publishes to Kamailio: bob sees her on the phone", 20*time.Second, func(ctx context.Context) error {
		phone := e.StartSipp(harness.SippConfig{Name: "carol-phone", Scenario: "uac_publish.xml", Remote: ps.Addr(), Service: "carol"})
		if err := phone.Wait(ctx); err != nil {
			return fmt.Errorf("carol's PUBLISH: %w", err)
		}
		return await(ctx, shown{"carol", "busy", "on a customer call"})
	})
	e.Step("no subscription failed, none refused", 5*time.Second, func(ctx context.Context) error {
		m, err := s.Metrics(ctx)
		if err != nil {
			return err
		}
		for _, k := range []string{`{request="subscribe",result="failed"}`, `{request="publish",result="failed"}`, `{request="subscribe",result="unsupported"}`} {
			if v := m.Values["strait_presence_upstream_total"+k]; v != 0 {
				return fmt.Errorf("strait_presence_upstream_total%s = %v", k, v)
			}
		}
		return nil
	})
}

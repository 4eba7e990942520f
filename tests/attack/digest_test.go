package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// answer computes a digest Authorization (or Proxy-Authorization) value
// for the first challenge of a 401/407, as a client with the password
// would.
func answer(t *testing.T, res, user, password, method, uri string) string {
	t.Helper()
	v := answerFor(res, user, password, method, uri)
	if v == "" {
		t.Fatalf("no usable challenge in\n%s", res)
	}
	return v
}

// answerFor is answer for use outside the test goroutine: "" when res
// holds no usable challenge.
func answerFor(res, user, password, method, uri string) string {
	name := "WWW-Authenticate"
	if statusOf(res) == 407 {
		name = "Proxy-Authenticate"
	}
	chal, err := digest.ParseChallenge(header(res, name))
	if err != nil {
		return ""
	}
	cred, err := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: user, Password: password})
	if err != nil {
		return ""
	}
	return cred.String()
}

// Issue 8 item 3. A victim's REGISTER Authorization and INVITE
// Proxy-Authorization are captured and replayed: from another host, with
// another Contact, over every transport; and the INVITE's credentials for
// sip:echo@ are presented for sip:bob@. Every replay must be challenged
// again (no binding, no call), counted, and a legitimate call placed
// meanwhile must work.
func TestDigestReplay(t *testing.T) {
	t.Parallel()
	const victim, victimPassword = "carol", "carol-battery-staple"
	tg := startTarget(t, targetConfig{Users: []string{victim + ":" + victimPassword, "bob:bob-secret-9"}})
	ctx := tg.ctx(time.Minute)
	const domain = "127.0.0.1"

	// The victim registers over UDP from 127.0.0.201: its Authorization is captured.
	victimIP := "127.0.0.201"
	var regAuth string
	res, err := exchange(ctx, tg, "UDP", victimIP, func(host string, port int) sipMsg {
		return register("UDP", host, port, domain, victim, 1)
	})
	if err != nil || statusOf(res) != 401 {
		t.Fatalf("victim's first REGISTER: %v\n%s", err, res)
	}
	regAuth = answer(t, res, victim, victimPassword, "REGISTER", "sip:"+domain)
	res, err = exchange(ctx, tg, "UDP", victimIP, func(host string, port int) sipMsg {
		m := register("UDP", host, port, domain, victim, 2)
		m.Headers = append(m.Headers, "Authorization: "+regAuth)
		return m
	})
	if err != nil || statusOf(res) != 200 {
		t.Fatalf("victim's REGISTER with credentials: %v\n%s", err, res)
	}

	// The victim calls echo from 127.0.0.202 (not where it registered, so
	// Strait asks for credentials): its Proxy-Authorization is captured.
	invite := func(host string, port int, transport, callee, auth string) sipMsg {
		m := sipMsg{Method: "INVITE", RURI: "sip:" + callee + "@" + domain,
			Via:     fmt.Sprintf("SIP/2.0/%s %s;rport", transport, hostPort(host, port)),
			From:    fmt.Sprintf("<sip:%s@%s>;tag=%s", victim, domain, token(4)),
			To:      fmt.Sprintf("<sip:%s@%s>", callee, domain),
			CallID:  token(10),
			CSeq:    1,
			Contact: fmt.Sprintf("<sip:%s@%s;transport=%s>", victim, hostPort(host, port), strings.ToLower(transport))}
		if auth != "" {
			m.Headers = append(m.Headers, "Proxy-Authorization: "+auth)
		}
		return m
	}
	res, err = exchange(ctx, tg, "UDP", "127.0.0.202", func(host string, port int) sipMsg {
		return invite(host, port, "UDP", "echo", "")
	})
	if err != nil || statusOf(res) != 407 {
		t.Fatalf("victim's INVITE to echo: %v\n%s", err, res)
	}
	invAuth := answer(t, res, victim, victimPassword, "INVITE", "sip:echo@"+domain)
	res, err = exchange(ctx, tg, "UDP", "127.0.0.202", func(host string, port int) sipMsg {
		return invite(host, port, "UDP", "echo", invAuth)
	})
	if err != nil || statusOf(res) == 407 || statusOf(res) == 401 {
		t.Fatalf("victim's INVITE to echo with credentials was not let through: %v\n%s", err, res)
	}
	t.Logf("victim's INVITE to echo (no SDP) with credentials: %d (past authentication)", statusOf(res))

	before := tg.counter("strait_auth_failures_total")
	var mu sync.Mutex
	var accepted []string
	a := startAttack(t, 3*time.Second, func(ctx context.Context, a *attack) error {
		for i := 0; ctx.Err() == nil && i < 300; i++ {
			transport := transports[i%len(transports)]
			src := attackerIP(i % 16)
			var build func(host string, port int) sipMsg
			var what string
			switch i % 3 {
			case 0: // the REGISTER replayed with the attacker's Contact
				what = "REGISTER replay"
				build = func(host string, port int) sipMsg {
					m := register(transport, host, port, domain, victim, 3+i)
					m.Headers = append(m.Headers, "Authorization: "+regAuth)
					return m
				}
			case 1: // the INVITE's credentials for another callee
				what = "Proxy-Authorization for echo presented for bob"
				build = func(host string, port int) sipMsg { return invite(host, port, transport, "bob", invAuth) }
			default: // the INVITE replayed as it was
				what = "INVITE replay"
				build = func(host string, port int) sipMsg { return invite(host, port, transport, "echo", invAuth) }
			}
			res, err := exchange(ctx, tg, transport, src, build)
			if ctx.Err() != nil {
				break
			}
			if err != nil {
				return fmt.Errorf("%s over %s: %w", what, transport, err)
			}
			a.Sent.Add(1)
			// 401/407: challenged again; 403: the source is blocked for
			// failing too often (item 4).
			if c := statusOf(res); c != 401 && c != 407 && c != 403 {
				mu.Lock()
				accepted = append(accepted, fmt.Sprintf("%s over %s from %s: %d", what, transport, src, c))
				mu.Unlock()
			} else {
				a.Refused.Add(1)
			}
		}
		return nil
	})
	tg.callDuring(a)
	a.wait(t)

	// No binding of the victim's but its own.
	var raw json.RawMessage
	if _, err := tg.Do(ctx, http.MethodGet, "/v1/registrations", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "sip:"+victim+"@127.0.0."); n != 1 || !strings.Contains(string(raw), "sip:"+victim+"@"+victimIP) {
		t.Errorf("the victim has %d bindings, want its own only: %s", n, raw)
	}
	if len(accepted) > 0 {
		t.Errorf("%d of %d replays were let through, e.g.:\n%s", len(accepted), a.Sent.Load(), strings.Join(accepted[:min(len(accepted), 6)], "\n"))
	}
	waitFor(t, 15*time.Second, "every replay counted", func() (bool, string) {
		m := tg.scrape()
		n := value(m, "strait_auth_failures_total") - before + value(m, "strait_sip_dropped_total", "reason=auth_blocked")
		return n >= float64(a.Sent.Load()), fmt.Sprintf("%g of %d", n, a.Sent.Load())
	})
	m := tg.scrape()
	for _, reason := range []string{"replay", "uri_mismatch"} {
		if value(m, "strait_auth_failures_total", "reason="+reason) == 0 {
			t.Errorf("no replay refused for reason %s: %s", reason, series(m, "strait_auth_failures_total"))
		}
	}
	t.Logf("%d replays over UDP, TCP and WS from 16 addresses: %d refused; counted: %s; %g refused unchecked (source blocked)",
		a.Sent.Load(), a.Refused.Load(), strings.ReplaceAll(series(m, "strait_auth_failures_total"), "\n", ", "),
		value(m, "strait_sip_dropped_total", "reason=auth_blocked"))
}

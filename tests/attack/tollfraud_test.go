package attack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// finalOver reads responses on a WebSocket until a final one and returns
// it.
func finalOver(c *wsConn, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		res, err := c.Recv(time.Until(deadline))
		if err != nil {
			return "", err
		}
		if code := statusOf(res); code >= 200 {
			return res, nil
		}
	}
}

// invite returns an INVITE from user to dest over WebSocket with an SDP
// offer.
func invite(dest, user, offer string) sipMsg {
	host := token(4) + ".invalid"
	return sipMsg{Method: "INVITE", RURI: "sip:" + dest + "@127.0.0.1",
		Via:     "SIP/2.0/WS " + host,
		From:    fmt.Sprintf("<sip:%s@127.0.0.1>;tag=%s", user, token(4)),
		To:      "<sip:" + dest + "@127.0.0.1>",
		CallID:  token(10),
		CSeq:    1,
		Contact: "<sip:" + token(4) + "@" + host + ";transport=ws>",
		Headers: []string{"Content-Type: application/sdp"},
		Body:    offer}
}

// pbxInvites returns the Request-URI and From of every INVITE the sipp PBX
// received.
func (tg *target) pbxInvites() []string {
	var out []string
	for _, m := range tg.pbx.Received() {
		if strings.HasPrefix(m, "INVITE ") {
			ruri := strings.Fields(m)[1]
			out = append(out, ruri+" from "+header(m, "From"))
		}
	}
	return out
}

// Issue 8 item 1. In trunk mode every INVITE from any WebSocket went to
// the PBX: a connection that never registered dialled 0044123456789 and
// the PBX got the INVITE (and a registered one reached international
// numbers, and could call as anyone). Trunks trusting the SBC's address
// made that free international calls. Now only a WebSocket with a live
// registration may call, as the user it registered, and international
// destinations need an --allow-dial; the API is held to the same plan.
func TestTollFraudRefused(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{Trunk: true})
	offerPeer, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	offer := offerPeer.Offer
	offerPeer.Close()

	var unregistered, forged, international atomic.Int64
	intl := []string{"0044123456789", "%2B8812345", "011-44-20-7123-4567", "+44%20123", "(00)33123456"}
	a := startAttack(t, 3*time.Second, func(ctx context.Context, a *attack) error {
		// mallory registers over her own WebSocket (the PBX accepts
		// anyone), then forges From and dials abroad from it.
		reg, err := dialWSFrom(ctx, attackerIP(0), tg.WS())
		if err != nil {
			return err
		}
		defer reg.Close()
		if err := reg.Send(register("WS", "mallory.invalid", 0, "127.0.0.1", "mallory", 1).String()); err != nil {
			return err
		}
		if res, err := finalOver(reg, 10*time.Second); err != nil || statusOf(res) != 200 {
			return fmt.Errorf("mallory's REGISTER: %v %q", err, res)
		}
		for i := 0; ctx.Err() == nil && i < 300; i++ {
			var c *wsConn
			var msg sipMsg
			var counter *atomic.Int64
			switch i % 3 {
			case 0: // never registered
				if c, err = dialWSFrom(ctx, attackerIP(1+i%7), tg.WS()); err != nil {
					return err
				}
				msg, counter = invite(intl[i%len(intl)], "mallory", offer), &unregistered
			case 1: // registered as mallory, calls as alice
				c, msg, counter = reg, invite("1000", legitUser, offer), &forged
			default: // registered, dials abroad
				c, msg, counter = reg, invite(intl[i%len(intl)], "mallory", offer), &international
			}
			a.Sent.Add(1)
			if err := c.Send(msg.String()); err != nil {
				return err
			}
			res, err := finalOver(c, 10*time.Second)
			if c != reg {
				c.Close()
			}
			if err != nil {
				return fmt.Errorf("no final answer to %s: %w", msg.RURI, err)
			}
			if statusOf(res) != 403 {
				return fmt.Errorf("%s from %s: %s", msg.RURI, msg.From, strings.SplitN(res, "\r\n", 2)[0])
			}
			a.Refused.Add(1)
			counter.Add(1)
		}
		return nil
	})
	tg.callDuring(a)
	a.wait(t)

	// The API, reachable without a token on loopback, may not call abroad
	// either.
	code, err := tg.Do(tg.ctx(10*time.Second), "POST", "/v1/calls", map[string]any{"to": "+8812345", "offer": offer}, nil)
	if code != 403 {
		t.Fatalf("API call to +8812345: %d %v", code, err)
	}

	tg.waitCounted(float64(unregistered.Load()), "strait_calls_refused_total", "reason=unregistered")
	tg.waitCounted(float64(forged.Load()), "strait_calls_refused_total", "reason=identity")
	tg.waitCounted(float64(international.Load()+1), "strait_calls_refused_total", "reason=destination")
	invites := tg.pbxInvites()
	if len(invites) != 1 || !strings.HasPrefix(invites[0], "sip:1000@") || !strings.Contains(invites[0], "<sip:"+legitUser+"@") {
		t.Fatalf("the PBX saw %d INVITEs, want only the legitimate call's:\n%s", len(invites), strings.Join(invites, "\n"))
	}
	t.Logf("%d fraudulent INVITEs (%d unregistered, %d forged From, %d international) and 1 API call: all 403; "+
		"the PBX saw %d INVITE (the legitimate call; before the fix it saw every one)",
		a.Sent.Load(), unregistered.Load(), forged.Load(), international.Load(), len(invites))
}

// Per-user limits hold against a registered account used for fraud: its
// third concurrent call gets 486, its fifth call in a minute 503 with
// Retry-After, and the PBX never sees them; another user's call works.
func TestCallLimitsEnforced(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{Trunk: true, Args: []string{"--max-calls-per-user", "2", "--max-call-rate-per-user", "4"}})
	ctx := tg.ctx(60 * time.Second)
	mallory, err := siptest.NewBrowser(tg.HTTPAddr, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	if res, err := mallory.Register(ctx, "", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("mallory's REGISTER: %v %v", res, err)
	}
	place := func() (*siptest.Dialog, *mediatest.Browser, int) {
		t.Helper()
		m, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		d, err := mallory.Invite(ctx, "1000", []byte(m.Offer))
		if err != nil {
			t.Fatal(err)
		}
		res, _ := d.WaitAnswer(ctx, "")
		if res == nil {
			t.Fatal("no final answer")
		}
		if res.StatusCode == 200 {
			if err := d.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if res.StatusCode == 503 && res.GetHeader("Retry-After") == nil {
			t.Fatalf("503 without Retry-After: %v", res)
		}
		return d, m, res.StatusCode
	}
	// The attack is mallory's calls: two held open while the legitimate
	// call is placed, one refused.
	a := startAttack(t, 20*time.Second, func(context.Context, *attack) error { return nil })
	first, _, c1 := place()
	second, _, c2 := place()
	_, _, c3 := place()
	if c1 != 200 || c2 != 200 || c3 != 486 {
		t.Fatalf("three calls at once: %d %d %d, want 200 200 486", c1, c2, c3)
	}
	a.Sent.Store(3)
	tg.callDuring(a)
	first.Hangup(ctx)
	second.Hangup(ctx)
	waitFor(t, 10*time.Second, "mallory's calls to end", func() (bool, string) {
		calls, err := tg.Calls(ctx)
		return err == nil && len(calls) == 0, fmt.Sprint(calls, err)
	})
	// Refused attempts do not count: two more calls fit the minute.
	for i := range 2 {
		d, _, code := place()
		if code != 200 {
			t.Fatalf("call %d of the minute: %d, want 200", i+3, code)
		}
		d.Hangup(ctx)
	}
	if _, _, code := place(); code != 503 {
		t.Fatalf("fifth call in a minute: %d, want 503", code)
	}
	tg.waitCounted(1, "strait_calls_refused_total", "reason=concurrent")
	tg.waitCounted(1, "strait_calls_refused_total", "reason=rate")
	mine := 0
	for _, inv := range tg.pbxInvites() {
		if strings.Contains(inv, "<sip:mallory@") {
			mine++
		}
	}
	if mine != 4 {
		t.Fatalf("the PBX saw %d of mallory's INVITEs, want 4 (the two at once, and two more)", mine)
	}
	t.Logf("6 calls from one account: 4 reached the PBX, 1 got 486 (2 in progress), 1 got 503 (4 in a minute)")
}

// The HTTP API does not start on a public address without a token: on
// loopback it may be open (the demo), anywhere else anyone who reaches it
// could place calls.
func TestAPIPublicNeedsToken(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait)
	// A port below the kernel's ephemeral range: FreePort's port, closed
	// until strait binds it on 0.0.0.0, could meanwhile become another
	// test's outgoing connection's.
	var port int
	fmt.Sscanf(harness.PortRange(t, 2), "%d-", &port)
	args := []string{"--http", fmt.Sprintf("0.0.0.0:%d", port), "--sip", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
		"--user", "alice:secret", "--rtp-ports", harness.PortRange(t, 20), "--webrtc-ports", harness.PortRange(t, 2),
		"--state", "memory"}
	ctx, cancel := context.WithTimeout(e.Context(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, harness.StraitBin(), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out.String(), "--api-token") {
		t.Fatalf("strait on 0.0.0.0 without --api-token: %v\n%s", err, out.String())
	}
	t.Logf("without a token: exit %d, %q", exit.ExitCode(), firstLine(out.String(), "--api-token"))

	// With a token it starts, and the API wants it.
	with := exec.CommandContext(ctx, harness.StraitBin(), append(args, "--api-token", "s3cret")...)
	var running lockedBuffer // written by exec's copier while waitFor reads it
	with.Stdout, with.Stderr = &running, &running
	if err := with.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { with.Process.Kill(); with.Wait() }()
	url := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, 15*time.Second, "strait with a token to listen", func() (bool, string) {
		c, err := net.Dial("tcp", url)
		if err == nil {
			c.Close()
			return true, ""
		}
		return false, running.String()
	})
	res, err := http.Get("http://" + url + "/v1/calls")
	if err != nil {
		t.Fatalf("API without the token: %v\n%s", err, out.String())
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("API without the token: %s, want 401", res.Status)
	}
}

func firstLine(s, containing string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, containing) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// lockedBuffer is a bytes.Buffer safe to write from one goroutine and read
// from another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

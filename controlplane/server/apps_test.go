package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/examples/callapp/app"
)

// Calls to web apps (--app): a SIP phone calls numbers routed to apps.
// The example app (examples/callapp, pion) checks each webhook's
// signature and answers with an echo: media flows both ways through the
// node after a first webhook that got 500 was retried. An app that
// answers 202 answers through the API with its receive:APP key (another
// app's key gets 404); an app that rejects passes its SIP status on; an
// app that is down, or that never answers, gives the caller a clean
// failure and leaves no session, call or goroutine behind.
func TestCallsToApps(t *testing.T) {
	const secret = "a-webhook-secret-for-tests-0123"
	secretPath := filepath.Join(t.TempDir(), "app.secret")
	if err := os.WriteFile(secretPath, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// demo: the example app, behind a first 500.
	echo := app.New(app.Options{Secret: []byte(secret), LoopbackOnly: true, Log: testLog(t)})
	t.Cleanup(echo.Close)
	var demoHits atomic.Int32
	demo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if demoHits.Add(1) == 1 {
			http.Error(w, "warming up", http.StatusInternalServerError)
			return
		}
		echo.ServeHTTP(w, r)
	}))
	t.Cleanup(demo.Close)
	// later: accepts with 202 and hands the offer to the test.
	offers := make(chan apps.Incoming, 4)
	later := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := apps.Verify([]byte(secret), r.Header.Get(apps.HeaderSignature), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var in apps.Incoming
		json.Unmarshal(body, &in)
		offers <- in
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(later.Close)
	// busy: refuses every call with 486.
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reject":486}`)
	}))
	t.Cleanup(busy.Close)
	// hang: never answers; tells when Strait gave the request up.
	hangGot, hangGone := make(chan struct{}, 1), make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server notices a closed connection once the body is read
		select {
		case hangGot <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
			select {
			case hangGone <- struct{}{}:
			default:
			}
		case <-time.After(20 * time.Second):
		}
	}))
	t.Cleanup(hang.Close)
	// down: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String() + "/calls"
	ln.Close()

	laterTok, laterKey, _ := apiauth.NewToken("later-app", "", []string{apiauth.ScopeReceive + ":later"})
	otherTok, otherKey, _ := apiauth.NewToken("other-app", "", []string{apiauth.ScopeReceive + ":demo"})
	hangTok, hangKey, _ := apiauth.NewToken("hang-app", "", []string{apiauth.ScopeReceive + ":hang"})
	e := start(t, func(c *config.Config) {
		c.APIToken = "operator"
		c.APIKeys = []string{laterKey, otherKey, hangKey}
		c.AppAllowPrivate = true
		c.AppAnswerTimeout = 6 * time.Second
		c.Apps = []string{
			"demo:_80XX:" + secretPath + ":" + demo.URL + "/calls",
			"later:_81XX:" + secretPath + ":" + later.URL,
			"busy:_82XX:" + secretPath + ":" + busy.URL,
			"down:_83XX:" + secretPath + ":" + downURL,
			"silent:_84XX:" + secretPath + ":" + later.URL,
			"hang:_85XX:" + secretPath + ":" + hang.URL,
		}
	})
	base := "http://" + e.srv.HTTPAddr()
	api := func(token, method, path, body string) (int, []byte) {
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
	phone, err := siptest.NewUDP(e.srv.SIPAddr(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(phone.Close)
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()

	// call places a call from the phone to number and returns its final
	// status; on 200, the media is checked and the call hung up.
	call := func(t *testing.T, number string) int {
		t.Helper()
		plain := newPlain(t)
		d, err := phone.Invite(ctx(t), number, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		if err != nil {
			t.Fatal(err)
		}
		res, _ := d.WaitAnswer(ctx(t), "")
		if res == nil {
			t.Fatalf("%s: no final response", number)
		}
		if res.StatusCode != 200 {
			t.Logf("%s: %d %s", number, res.StatusCode, res.Reason)
			return res.StatusCode
		}
		if err := d.Ack(ctx(t)); err != nil {
			t.Fatal(err)
		}
		// The app echoes: what the phone sends comes back.
		to := plainAddr(t, res.Body())
		var seq uint16
		e.waitConnected()
		plainSend(t, plain, to, &seq, "to-app", 25)
		plainReceive(t, plain, "to-app", 10)
		if err := d.Hangup(ctx(t)); err != nil {
			t.Fatal(err)
		}
		e.waitCalls(0)
		e.waitSessions(0)
		return 200
	}

	t.Run("webhook retried then answered by the example app", func(t *testing.T) {
		if code := call(t, "8001"); code != 200 {
			t.Fatalf("call to the example app: %d", code)
		}
		if n := demoHits.Load(); n != 2 {
			t.Fatalf("the app got %d webhooks, want 2 (a 500, then the answer)", n)
		}
		for res, want := range map[string]float64{"5xx": 1, "2xx": 1} {
			if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_webhook_attempts_total", map[string]string{"app": "demo", "result": res}); got != want {
				t.Errorf("attempts{demo,%s} = %v, want %v", res, got, want)
			}
		}
		if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_calls_total", map[string]string{"app": "demo", "outcome": "answered"}); got != 1 {
			t.Errorf("answered = %v, want 1", got)
		}
	})

	t.Run("answered through the API", func(t *testing.T) {
		stopEcho := make(chan struct{})
		defer close(stopEcho)
		done := make(chan int, 1)
		go func() {
			// The app's answer comes through POST /v1/calls/{id}/answer.
			in := <-offers
			if in.Callee != "8101" || in.Caller != "carol" || in.AnswerURL != "/v1/calls/"+in.Call+"/answer" {
				t.Errorf("webhook %+v", in)
			}
			ans := newAnswerer(t)
			sdp, _ := json.Marshal(map[string]string{"answer": string(ans.answer(t, []byte(in.Offer)))})
			if code, b := api(otherTok, "POST", in.AnswerURL, string(sdp)); code != 404 {
				t.Errorf("another app's key answering: %d %s", code, b)
			}
			if code, b := api(laterTok, "GET", in.CallURL, ""); code != 200 || !strings.Contains(string(b), `"app":"later"`) {
				t.Errorf("the app reading its call: %d %s", code, b)
			}
			code, b := api(laterTok, "POST", in.AnswerURL, string(sdp))
			if code != 204 {
				t.Errorf("answer: %d %s", code, b)
			}
			if code, _ := api(laterTok, "POST", in.AnswerURL, string(sdp)); code != 409 {
				t.Errorf("a second answer: %d, want 409", code)
			}
			go func() { // the app's side of the echo, pion
				for {
					select {
					case pk := <-ans.Received:
						ans.Send(0, pk.SequenceNumber, pk.Timestamp, false, pk.Payload)
					case <-stopEcho:
						return
					}
				}
			}()
			done <- code
		}()
		if code := call(t, "8101"); code != 200 {
			t.Fatalf("call answered through the API: %d", code)
		}
		<-done
	})

	t.Run("rejected by the app", func(t *testing.T) {
		if code := call(t, "8201"); code != 486 {
			t.Fatalf("call the app rejects: %d, want 486", code)
		}
	})

	t.Run("app down", func(t *testing.T) {
		if code := call(t, "8301"); code != 480 {
			t.Fatalf("call to an app that is down: %d, want 480", code)
		}
		if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_calls_total", map[string]string{"app": "down", "outcome": "unreachable"}); got != 1 {
			t.Errorf("unreachable = %v, want 1", got)
		}
		if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_webhook_attempts_total", map[string]string{"app": "down", "result": "error"}); got != float64(apps.DefaultRetry.Attempts) {
			t.Errorf("attempts{down,error} = %v, want %d (bounded retries)", got, apps.DefaultRetry.Attempts)
		}
	})

	t.Run("app never answers", func(t *testing.T) {
		go func() { <-offers }()
		if code := call(t, "8401"); code != 408 {
			t.Fatalf("call the app never answers: %d, want 408", code)
		}
	})

	t.Run("call ended while the webhook is pending", func(t *testing.T) {
		// The previous subtest's call may still be listed (ended, its
		// teardown not finished): wait until it is gone.
		for deadline := time.Now().Add(10 * time.Second); len(e.srv.Engine.Calls()) != 0; {
			if time.Now().After(deadline) {
				t.Fatalf("calls still listed: %+v", e.srv.Engine.Calls())
			}
			time.Sleep(20 * time.Millisecond)
		}
		plain := newPlain(t)
		d, err := phone.Invite(ctx(t), "8501", siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan *sip.Response, 1)
		go func() { res, _ := d.WaitAnswer(ctx(t), ""); answered <- res }()
		select {
		case <-hangGot:
		case <-time.After(10 * time.Second):
			t.Fatal("no webhook")
		}
		// The operator hangs the ringing call up (the same stop as a
		// caller's CANCEL): the webhook's request is abandoned at once.
		calls := e.srv.Engine.Calls()
		if len(calls) != 1 || calls[0].App != "hang" {
			t.Fatalf("calls %+v", calls)
		}
		if code, b := api("operator", "DELETE", "/v1/calls/"+calls[0].ID, ""); code != 204 {
			t.Fatalf("DELETE: %d %s", code, b)
		}
		select {
		case <-hangGone: // before the attempt's own 5 s timeout
		case <-time.After(3 * time.Second):
			t.Fatal("the webhook went on after the call ended")
		}
		if res := <-answered; res == nil || res.StatusCode < 400 {
			t.Fatalf("the caller of a call ended while ringing got %v", res)
		}
		e.waitCalls(0)
		e.waitSessions(0)
		if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_calls_total", map[string]string{"app": "hang", "outcome": "cancelled"}); got != 1 {
			t.Errorf("cancelled = %v, want 1", got)
		}
	})

	t.Run("caller cancels while the webhook is pending", func(t *testing.T) {
		// The hang app follows its calls' events with its receive key.
		sctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
		defer stop()
		req, _ := http.NewRequestWithContext(sctx, "GET", base+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+hangTok)
		stream, err := http.DefaultClient.Do(req)
		if err != nil || stream.StatusCode != 200 {
			t.Fatalf("the app's event stream: %v %v", stream, err)
		}
		defer stream.Body.Close()
		events := make(chan map[string]any, 16)
		go func() {
			sc := bufio.NewScanner(stream.Body)
			for sc.Scan() {
				if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var ev map[string]any
					json.Unmarshal([]byte(d), &ev)
					events <- ev
				}
			}
			close(events)
		}()
		cancelledBefore := metricValue(t, e.srv.Metrics.Registry, "strait_app_calls_total", map[string]string{"app": "hang", "outcome": "cancelled"})
		plain := newPlain(t)
		d, err := phone.Invite(ctx(t), "8502", siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan *sip.Response, 1)
		go func() { res, _ := d.WaitAnswer(ctx(t), ""); answered <- res }()
		select {
		case <-hangGot:
		case <-time.After(10 * time.Second):
			t.Fatal("no webhook")
		}
		select {
		case r := <-d.Provisional:
			if r.StatusCode != 180 {
				t.Fatalf("provisional %d, want 180", r.StatusCode)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no 180 before the CANCEL")
		}
		res, err := d.Cancel(ctx(t))
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("CANCEL: %v %v", res, err)
		}
		select {
		case res := <-answered:
			if res == nil || res.StatusCode != 487 {
				t.Fatalf("the cancelled INVITE got %v, want 487 (RFC 3261 section 9.2)", res)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no final response to the cancelled INVITE")
		}
		select {
		case <-hangGone: // abandoned at once, not at the attempt's own timeout
		case <-time.After(3 * time.Second):
			t.Fatal("the webhook went on after the caller cancelled")
		}
		// The app saw the call ring, then end with the caller's 487.
		var id string
		for ended := false; !ended; {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("the app's event stream closed")
				}
				switch {
				case ev["state"] == "ringing" && ev["callee"] == "8502" && ev["app"] == "hang":
					id, _ = ev["call"].(string)
				case ev["state"] == "ended" && id != "" && ev["call"] == id:
					if ev["cause"] != float64(487) {
						t.Fatalf("the app's end event: %v, want cause 487", ev)
					}
					ended = true
				}
			case <-sctx.Done():
				t.Fatalf("the app got no end event (ringing seen: %q)", id)
			}
		}
		e.waitCalls(0)
		e.waitSessions(0)
		if got := metricValue(t, e.srv.Metrics.Registry, "strait_app_calls_total", map[string]string{"app": "hang", "outcome": "cancelled"}); got != cancelledBefore+1 {
			t.Errorf("cancelled = %v, want %v", got, cancelledBefore+1)
		}
	})

	e.waitCalls(0)
	e.waitSessions(0)
	echo.Close()
	// Keep-alive connections are not calls: close them (the webhooks'
	// from the servers' side) before counting.
	for _, s := range []*httptest.Server{demo, later, busy, hang} {
		s.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	waitGoroutines(t, baseGoroutines, 10)
}

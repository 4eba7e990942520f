package apps

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// attempts reads strait_app_webhook_attempts_total{app="demo",result}.
func attempts(t *testing.T, h *Hooks, result string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strait_app_webhook_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["app"] == "demo" && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestSignVerify(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	body := []byte(`{"type":"call.incoming"}`)
	now := time.Unix(1_800_000_000, 0)
	good := Sign(secret, now, body)
	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"good", good, body, now, nil},
		{"good, within tolerance", good, body, now.Add(4 * time.Minute), nil},
		{"stale (replayed later)", good, body, now.Add(6 * time.Minute), ErrStale},
		{"from the future", good, body, now.Add(-6 * time.Minute), ErrStale},
		{"body changed", good, []byte(`{"type":"call.incoming "}`), now, ErrBadSignature},
		{"other secret", Sign([]byte("another secret, long"), now, body), body, now, ErrBadSignature},
		{"timestamp changed", strings.Replace(good, "t=1800000000", "t=1800000001", 1), body, now, ErrBadSignature},
		{"rotated: second v1 matches", good[:strings.Index(good, "v1=")] + "v1=" + strings.Repeat("00", 32) + "," + good[strings.Index(good, "v1="):], body, now, nil},
		{"no header", "", body, now, ErrNoSignature},
		{"no v1", "t=1800000000", body, now, ErrNoSignature},
		{"short v1", "t=1800000000,v1=abcd", body, now, ErrNoSignature},
		{"garbage", "t=x,v1=zz", body, now, ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify(secret, tc.header, tc.body, tc.at, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func writeSecret(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseAndLoad(t *testing.T) {
	good := writeSecret(t, "a-webhook-secret-of-32-bytes....\n")
	short := writeSecret(t, "short")
	for _, tc := range []struct {
		spec string
		ok   bool
	}{
		{"demo:_8XXX:" + good + ":https://app.example.com/calls", true},
		{"demo:8000:" + good + ":http://10.0.0.5:8090/calls?x=1", true},
		{"demo:_8XXX:" + good, false},
		{"bad name!:_8XXX:" + good + ":https://a.example/", false},
		{"demo:_8[:" + good + ":https://a.example/", false},
		{"demo:_8XXX:" + good + ":ftp://a.example/", false},
		{"demo:_8XXX:" + good + ":https://user:pw@a.example/", false},
		{"demo:_8XXX:" + good + ":https:///nohost", false},
		{"demo:_8XXX:" + good + ":https://a.example/#frag", false},
		{"demo:_8XXX:" + short + ":https://a.example/", false},
		{"demo:_8XXX:/does/not/exist:https://a.example/", false},
	} {
		sp, err := ParseSpec(tc.spec)
		if err == nil {
			_, err = Load(sp)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.spec, err, tc.ok)
		}
	}
	a, _ := Load(Spec{Name: "a", Pattern: "_8XXX", SecretFile: good, URL: "https://a.example/"})
	b, _ := Load(Spec{Name: "b", Pattern: "_8.", SecretFile: good, URL: "https://b.example/"})
	r, err := New(Config{Apps: []*App{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	for callee, want := range map[string]string{"8001": "a", "80012": "b", "9001": "", "800": "b"} {
		got, ok := r.Match(callee)
		if (want == "") == ok || (ok && got.Name != want) {
			t.Errorf("Match(%q) = %v %v, want %q", callee, got, ok, want)
		}
	}
	if _, err := New(Config{Apps: []*App{a, a}}); err == nil {
		t.Error("an app given twice was taken")
	}
	if r, err := New(Config{}); r != nil || err != nil {
		t.Errorf("no apps: %v %v, want nil nil", r, err)
	}
	var none *Router
	if _, ok := none.Match("8001"); ok {
		t.Error("a nil router matched")
	}
}

func TestInternal(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.169.254": true,
		"100.64.0.1": true, "0.0.0.0": true, "::1": true, "fe80::1": true, "fd00::1": true, "::ffff:127.0.0.1": true,
		"::ffff:10.0.0.1": true, "64:ff9b::a00:1": true, "224.0.0.1": true, "255.255.255.255": true,
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700::1111": false, "93.184.216.34": false,
	} {
		if got := Internal(netip.MustParseAddr(s)); got != want {
			t.Errorf("Internal(%s) = %v, want %v", s, got, want)
		}
	}
}

// testApp is an app aimed at srv with fast retries.
func testApp(t *testing.T, srv *httptest.Server, allowPrivate bool) (*Router, *App) {
	t.Helper()
	a, err := Load(Spec{Name: "demo", Pattern: "_8XXX", SecretFile: writeSecret(t, "0123456789abcdef0123"), URL: srv.URL + "/calls"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Apps: []*App{a}, AllowPrivate: allowPrivate,
		Retry: Retry{Attempts: 3, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond, PerAttempt: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return r, a
}

func TestOffer(t *testing.T) {
	const answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
	type step func(w http.ResponseWriter)
	status := func(code int) step { return func(w http.ResponseWriter) { w.WriteHeader(code) } }
	sdp := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/sdp")
		io.WriteString(w, answer)
	}
	jsonBody := func(s string) step {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, s)
		}
	}
	hang := func(w http.ResponseWriter) { time.Sleep(time.Second) }
	for _, tc := range []struct {
		name     string
		steps    []step
		want     Reply
		attempts map[string]float64
	}{
		{"sdp at once", []step{sdp}, Reply{Answer: []byte(answer)}, map[string]float64{"2xx": 1}},
		{"500 then sdp", []step{status(500), sdp}, Reply{Answer: []byte(answer)}, map[string]float64{"5xx": 1, "2xx": 1}},
		{"503, 429 then json answer", []step{status(503), status(429), jsonBody(`{"answer":"v=0 x"}`)}, Reply{Answer: []byte("v=0 x")}, map[string]float64{"5xx": 1, "4xx": 1, "2xx": 1}},
		{"timeout then sdp", []step{hang, sdp}, Reply{Answer: []byte(answer)}, map[string]float64{"timeout": 1, "2xx": 1}},
		{"json reject", []step{jsonBody(`{"reject":486}`)}, Reply{Reject: 486}, map[string]float64{"2xx": 1}},
		{"202: later", []step{status(202)}, Reply{Later: true}, map[string]float64{"2xx": 1}},
		{"always 500: bounded", []step{status(500), status(500), status(500), sdp}, Reply{Err: errors.New("")}, map[string]float64{"5xx": 3}},
		{"401: not retried", []step{status(401), sdp}, Reply{Err: errors.New("")}, map[string]float64{"4xx": 1}},
		{"redirect: not followed", []step{func(w http.ResponseWriter) { w.Header().Set("Location", "http://127.0.0.1:1/"); w.WriteHeader(307) }}, Reply{Err: errors.New("")}, map[string]float64{"4xx": 1}},
		{"bad json", []step{jsonBody(`{"reject":200}`)}, Reply{Err: errors.New("")}, map[string]float64{"2xx": 1}},
		{"text", []step{func(w http.ResponseWriter) { io.WriteString(w, "ok") }}, Reply{Err: errors.New("")}, map[string]float64{"2xx": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			var mu sync.Mutex
			var gotBody []byte
			var sigErr error
			var deliveries []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				mu.Lock()
				defer mu.Unlock()
				gotBody, _ = io.ReadAll(r.Body)
				deliveries = append(deliveries, r.Header.Get(HeaderDelivery))
				if err := Verify([]byte("0123456789abcdef0123"), r.Header.Get(HeaderSignature), gotBody, time.Now(), 0); err != nil {
					sigErr = err
				}
				if i < len(tc.steps) {
					mu.Unlock()
					tc.steps[i](w)
					mu.Lock()
				}
			}))
			defer srv.Close()
			r, a := testApp(t, srv, true)
			rep := r.Hooks().Offer(context.Background(), a, Incoming{Call: "c1", Caller: "alice", Callee: "8001", Offer: "v=0 offer"})
			srv.Close() // every handler has returned
			if sigErr != nil {
				t.Fatalf("a webhook's signature does not verify: %v", sigErr)
			}
			if string(rep.Answer) != string(tc.want.Answer) || rep.Reject != tc.want.Reject || rep.Later != tc.want.Later || (rep.Err != nil) != (tc.want.Err != nil) {
				t.Fatalf("reply %+v (%v), want %+v", rep, rep.Err, tc.want)
			}
			var in Incoming
			if err := json.Unmarshal(gotBody, &in); err != nil || in.Type != "call.incoming" || in.App != "demo" || in.Call != "c1" || in.Offer != "v=0 offer" {
				t.Fatalf("webhook body %s: %v", gotBody, err)
			}
			for _, d := range deliveries {
				if d != in.Delivery || d == "" {
					t.Fatalf("deliveries %v: want one id on every retry (%s)", deliveries, in.Delivery)
				}
			}
			for _, res := range []string{"2xx", "4xx", "5xx", "timeout", "error", "internal_address"} {
				if got := attempts(t, r.Hooks(), res); got != tc.attempts[res] {
					t.Errorf("attempts{result=%q} = %v, want %v", res, got, tc.attempts[res])
				}
			}
		})
	}
}

func TestOfferRefusesInternalAddresses(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	r, a := testApp(t, srv, false)
	rep := r.Hooks().Offer(context.Background(), a, Incoming{Call: "c1"})
	if !errors.Is(rep.Err, ErrInternalAddress) || hits.Load() != 0 {
		t.Fatalf("reply %+v, %d requests: want ErrInternalAddress and none sent", rep, hits.Load())
	}
	if got := attempts(t, r.Hooks(), "internal_address"); got != 1 {
		t.Fatalf("internal_address attempts = %v, want 1 (not retried)", got)
	}
	// A name that resolves to loopback is refused the same way.
	u, _ := url.Parse(srv.URL)
	a.URL.Host = "localhost:" + u.Port()
	if rep := r.Hooks().Offer(context.Background(), a, Incoming{Call: "c2"}); !errors.Is(rep.Err, ErrInternalAddress) || hits.Load() != 0 {
		t.Fatalf("localhost: reply %+v, %d requests", rep, hits.Load())
	}
}

func TestOfferStopsWithTheCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	r, a := testApp(t, srv, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if rep := r.Hooks().Offer(ctx, a, Incoming{Call: "c1"}); rep.Err == nil {
		t.Fatal("a cancelled offer succeeded")
	}
	if time.Since(start) > time.Second {
		t.Fatal("a cancelled offer went on retrying")
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add("application/json", []byte(`{"answer":"v=0"}`), 200)
	f.Add("application/json", []byte(`{"reject":486}`), 200)
	f.Add("application/sdp", []byte("v=0\r\n"), 201)
	f.Add("text/plain", []byte("x"), 202)
	f.Fuzz(func(t *testing.T, ct string, body []byte, code int) {
		res := &http.Response{StatusCode: code, Header: http.Header{"Content-Type": []string{ct}}}
		rep := parseResponse(res, body)
		n := 0
		if rep.Answer != nil {
			n++
		}
		if rep.Reject != 0 {
			n++
			if rep.Reject < 400 || rep.Reject > 699 {
				t.Fatalf("reject %d", rep.Reject)
			}
		}
		if rep.Later {
			n++
		}
		if rep.Err != nil {
			n++
		}
		if n != 1 {
			t.Fatalf("reply %+v: want exactly one outcome", rep)
		}
	})
}

package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apps"
)

const secret = "the-app-secret-0123456789"

func newServer(t *testing.T, o Options) *Server {
	t.Helper()
	if o.App == "" {
		o.App = "demo"
	}
	o.Secret = []byte(secret)
	if o.Strait == "" {
		o.Strait = "http://127.0.0.1:8080"
	}
	if o.Token == "" {
		o.Token = "strait_key"
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// webhook posts a call.incoming signed as Strait signs it (apps.Sign).
func webhook(s http.Handler, delivery, app, call, sig string) *http.Response {
	body := fmt.Sprintf(`{"type":"call.incoming","delivery":%q,"call":%q,"app":%q,"caller":"+4420","callee":"8001",
		"expires":%q,"offer":"v=0\r\n"}`, delivery, call, app, time.Now().Add(30*time.Second).Format(time.RFC3339))
	if sig == "" {
		sig = apps.Sign([]byte(secret), time.Now(), []byte(body))
	}
	r := httptest.NewRequest(http.MethodPost, "/calls", strings.NewReader(body))
	r.Header.Set("Strait-Signature", sig)
	r.Header.Set("Strait-Delivery", delivery)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	return rec.Result()
}

func get(s http.Handler, path string) (*http.Response, string) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(b)
}

func TestWebhook(t *testing.T) {
	s := newServer(t, Options{MaxRinging: 2})
	for _, tc := range []struct {
		name, delivery, app, call, sig string
		want                           int
		reject                         int
	}{
		{name: "signed by strait", delivery: "d1", app: "demo", call: "c1", want: http.StatusAccepted},
		{name: "replayed", delivery: "d1", app: "demo", call: "c1", want: http.StatusConflict},
		{name: "forged", delivery: "d2", app: "demo", call: "c2", sig: "t=1,v1=00", want: http.StatusUnauthorized},
		{name: "another app's call", delivery: "d3", app: "other", call: "c3", want: http.StatusBadRequest},
		{name: "second call", delivery: "d4", app: "demo", call: "c4", want: http.StatusAccepted},
		{name: "one too many: busy", delivery: "d5", app: "demo", call: "c5", want: http.StatusOK, reject: 486},
	} {
		res := webhook(s, tc.delivery, tc.app, tc.call, tc.sig)
		if res.StatusCode != tc.want {
			t.Errorf("%s: %s, want %d", tc.name, res.Status, tc.want)
		}
		if tc.reject != 0 {
			var r struct{ Reject int }
			json.NewDecoder(res.Body).Decode(&r)
			if r.Reject != tc.reject {
				t.Errorf("%s: reject %d, want %d", tc.name, r.Reject, tc.reject)
			}
		}
	}
	if n := s.Ringing(); n != 2 {
		t.Errorf("%d calls ringing, want 2", n)
	}
}

// The page may hear of the call before the webhook arrives: GET
// /offers/{call} waits for it, and gives up after OfferWait.
func TestOfferWaitsForTheWebhook(t *testing.T) {
	s := newServer(t, Options{OfferWait: 3 * time.Second})
	var wg sync.WaitGroup
	var res *http.Response
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, body = get(s, "/offers/c1")
	}()
	time.Sleep(50 * time.Millisecond) // the request is waiting (or not yet: either way it must succeed)
	if r := webhook(s, "d1", "demo", "c1", ""); r.StatusCode != http.StatusAccepted {
		t.Fatal(r.Status)
	}
	wg.Wait()
	var o Offer
	if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &o) != nil || o.Call != "c1" || o.Caller != "+4420" || o.Offer != "v=0\r\n" {
		t.Fatalf("offer: %s %s", res.Status, body)
	}
	// Waiting requests are bounded (4 per ringing call allowed): the
	// fifth of MaxRinging 1 is 503 at once.
	s3 := newServer(t, Options{MaxRinging: 1, OfferWait: 2 * time.Second})
	var waiting sync.WaitGroup
	for range 4 {
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			get(s3, "/offers/late")
		}()
	}
	for len(s3.waiters) < 4 {
		time.Sleep(5 * time.Millisecond)
	}
	if res, _ := get(s3, "/offers/late"); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a fifth waiting request: %s, want 503", res.Status)
	}
	webhook(s3, "d9", "demo", "late", "")
	waiting.Wait()
	s2 := newServer(t, Options{OfferWait: 100 * time.Millisecond})
	if res, _ := get(s2, "/offers/nope"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown call: %s", res.Status)
	}
}

func TestSession(t *testing.T) {
	t.Run("key", func(t *testing.T) {
		res, body := get(newServer(t, Options{Token: "strait_abc"}), "/session")
		var ss Session
		if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ss) != nil || ss.Token != "strait_abc" || ss.App != "demo" ||
			ss.Strait != "http://127.0.0.1:8080" || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s %s", res.Status, body)
		}
	})
	t.Run("minted", func(t *testing.T) {
		var got struct {
			User   string
			Scopes []string
			TTL    int `json:"ttl_s"`
		}
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/tokens" || r.Header.Get("Authorization") != "Bearer admin" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			json.NewDecoder(r.Body).Decode(&got)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"token":"eyJ.minted","expires":"2030-01-01T00:00:00Z"}`)
		}))
		defer fake.Close()
		s := newServer(t, Options{Token: "admin", Mint: true, API: fake.URL, TokenTTL: 10 * time.Minute})
		res, body := get(s, "/session")
		var ss Session
		if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ss) != nil || ss.Token != "eyJ.minted" || ss.Expires.Year() != 2030 {
			t.Fatalf("%s %s", res.Status, body)
		}
		if got.User != "demo" || len(got.Scopes) != 1 || got.Scopes[0] != "receive:demo" || got.TTL != 600 {
			t.Fatalf("asked strait for %+v", got)
		}
		bad := newServer(t, Options{Token: "wrong", Mint: true, API: fake.URL})
		if res, _ := get(bad, "/session"); res.StatusCode != http.StatusBadGateway {
			t.Fatalf("refused mint: %s", res.Status)
		}
	})
}

func TestPage(t *testing.T) {
	s := newServer(t, Options{Strait: "https://strait.example.com:8443"})
	for path, want := range map[string]string{"/": `src="app.js"`, "/app.js": "from './strait.js'", "/strait.js": "export class Strait", "/style.css": ".meter"} {
		res, body := get(s, path)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %s, lacks %q", path, res.Status, want)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' https://strait.example.com:8443;") {
			t.Errorf("GET %s: CSP %q does not let the page reach Strait", path, csp)
		}
	}
	for _, path := range []string{"/index.html", "/server.go", "/static/app.js"} {
		if res, _ := get(s, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, res.Status)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, o := range []Options{
		{App: "", Secret: []byte(secret), Strait: "http://x", Token: "t"},
		{App: "a:b", Secret: []byte(secret), Strait: "http://x", Token: "t"},
		{App: "demo", Secret: []byte("short"), Strait: "http://x", Token: "t"},
		{App: "demo", Secret: []byte(secret), Strait: "ftp://x", Token: "t"},
		{App: "demo", Secret: []byte(secret), Strait: "http://x"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/metrics"
)

// guardHTTP, by path: API, WHIP and WebSocket upgrades spend their
// source's tokens and get 429 (problem details, Retry-After) beyond them;
// health checks, metrics and the page's files never do; on a connection
// from the reserve only health checks are served.
func TestGuardHTTP(t *testing.T) {
	s := &Server{Metrics: metrics.New(), edge: &edge{http: admission.NewBuckets(1, 2, 16)}}
	reservedCtx := reserveContext(t)
	h := s.guardHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(path, from string, reserved bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = from
		if reserved {
			r = r.WithContext(reservedCtx)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		name     string
		paths    []string
		from     string
		reserved bool
		want     []int
	}{
		{"API beyond the burst", []string{"/v1/calls", "/v1/calls", "/v1/calls"}, "192.0.2.1:1000", false, []int{204, 204, 429}},
		{"WHIP and WebSocket share the bucket", []string{"/whip/echo", "/ws", "/v1/calls"}, "192.0.2.2:1000", false, []int{204, 204, 429}},
		{"another source has its own", []string{"/v1/calls"}, "192.0.2.3:1000", false, []int{204}},
		{"IPv6 counts by /64", []string{"/v1/calls", "/v1/calls"}, "[2001:db8::1]:1", false, []int{204, 204}},
		{"IPv6 same /64", []string{"/v1/calls"}, "[2001:db8::2]:1", false, []int{429}},
		{"health, metrics and files pass", []string{"/healthz", "/readyz", "/metrics", "/", "/app.js", "/healthz"}, "192.0.2.1:1000", false,
			[]int{204, 204, 204, 204, 204, 204}},
		{"reserve: health checks only", []string{"/healthz", "/metrics", "/v1/calls", "/"}, "192.0.2.4:1000", true, []int{204, 204, 503, 503}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, p := range tc.paths {
				w := do(p, tc.from, tc.reserved)
				if w.Code != tc.want[i] {
					t.Fatalf("request %d (%s): %d, want %d", i, p, w.Code, tc.want[i])
				}
				if w.Code == 429 || w.Code == 503 {
					var prob struct {
						Status int    `json:"status"`
						Type   string `json:"type"`
					}
					if err := json.Unmarshal(w.Body.Bytes(), &prob); err != nil || prob.Status != w.Code {
						t.Errorf("%s: body %q is not problem details (%v)", p, w.Body.String(), err)
					}
					if w.Header().Get("Retry-After") == "" {
						t.Errorf("%s: %d without Retry-After", p, w.Code)
					}
				}
			}
		})
	}
}

// reserveContext returns the context http.Server gives the requests of a
// connection taken from the reserve: the second of a listener whose total
// is 1 with a reserve of 1.
func reserveContext(t *testing.T) context.Context {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := admission.NewConnections(admission.Limits{Total: 1}).Listen(ln, "http", 1)
	defer l.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		a, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, a)
	}
	if admission.Reserved(admission.ConnContext(context.Background(), conns[1])) {
		t.Fatal("the first connection came from the reserve")
	}
	ctx := admission.ConnContext(context.Background(), conns[3])
	if !admission.Reserved(ctx) {
		t.Fatal("the connection beyond the total is not marked as from the reserve")
	}
	return ctx
}

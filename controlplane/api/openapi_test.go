package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/controlplane/api/apitest"
	"github.com/strait-sbc/strait/controlplane/apiauth"
)

// The document lists exactly the operations the API serves.
func TestOpenAPIRoutes(t *testing.T) {
	chk := apitest.New(t, OpenAPI())
	var served []string
	for _, r := range New(Config{}).Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	slices.Sort(served)
	if doc := chk.Operations(); !slices.Equal(doc, served) {
		t.Fatalf("the OpenAPI document and the routes differ:\ndocument: %q\nserved:   %q", doc, served)
	}
}

// Requests the API refuses before touching a call, each with its status
// and a problem details body the document describes.
func TestProblems(t *testing.T) {
	chk := apitest.New(t, OpenAPI())
	auth, _ := apiauth.New(apiauth.Config{Token: "tok"})
	srv := httptest.NewServer(New(Config{Auth: func() *apiauth.Authenticator { return auth }}))
	defer srv.Close()
	client := &http.Client{Transport: chk.Transport(nil)}
	for _, tc := range []struct {
		name, method, path, ctype, body, token string
		status                                 int
		header                                 string // a header the response must carry
	}{
		{"no token", "GET", "/v1/calls", "", "", "", 401, "WWW-Authenticate"},
		{"wrong token", "GET", "/v1/calls", "", "", "nope", 401, "WWW-Authenticate"},
		{"document without token", "GET", "/v1/openapi.json", "", "", "", 200, ""},
		{"unknown path", "GET", "/v1/nothing", "", "", "tok", 404, ""},
		{"method", "PUT", "/v1/calls", "application/json", "{}", "tok", 405, "Allow"},
		{"method on an id", "PATCH", "/v1/calls/abc", "", "", "tok", 405, "Allow"},
		{"text/plain", "POST", "/v1/calls", "text/plain", `{"to":"echo","offer":"v=0"}`, "tok", 415, ""},
		{"form", "POST", "/v1/calls/x/dtmf", "application/x-www-form-urlencoded", "digits=1", "tok", 415, ""},
		{"too large", "POST", "/v1/calls", "application/json", `{"to":"echo","offer":"` + strings.Repeat("v", 3<<20) + `"}`, "tok", 413, ""},
		{"bad JSON", "POST", "/v1/calls", "application/json", `{"to":`, "tok", 400, ""},
		{"missing offer", "POST", "/v1/calls", "application/json; charset=utf-8", `{"to":"echo"}`, "tok", 400, ""},
		{"bad digits", "POST", "/v1/calls/x/dtmf", "", `{"digits":"12x"}`, "tok", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.header != "" && res.Header.Get(tc.header) == "" {
				t.Fatalf("no %s header", tc.header)
			}
			if tc.status < 400 {
				return
			}
			var p Problem
			if err := json.NewDecoder(res.Body).Decode(&p); err != nil || p.Status != tc.status || p.Title == "" || p.Type == "" {
				t.Fatalf("problem %+v %v", p, err)
			}
		})
	}
	// A plain OPTIONS names the methods.
	req, _ := http.NewRequest("OPTIONS", srv.URL+"/v1/calls/abc", nil)
	req.Header.Set("Authorization", "Bearer tok")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 || res.Header.Get("Allow") != "GET, HEAD, DELETE" {
		t.Fatalf("OPTIONS: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}

func TestWriteTooManyRequests(t *testing.T) {
	w := httptest.NewRecorder()
	WriteTooManyRequests(w, httptest.NewRequest("GET", "/v1/calls", nil), 1500_000_000, "slow down")
	var p Problem
	json.Unmarshal(w.Body.Bytes(), &p)
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || p.RetryAfter != 2 || p.Type != "/v1/problems/rate-limited" ||
		w.Header().Get("Content-Type") != ProblemContentType || p.Instance != "/v1/calls" {
		t.Fatalf("%d %v %+v", w.Code, w.Header(), p)
	}
}

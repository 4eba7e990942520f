package apitest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorder is a T that keeps what the Checker reports.
type recorder struct{ errs []string }

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recorder) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

const doc = `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{
 "/v1/things/{id}":{"get":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],
  "responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Thing"}}}},
   "404":{"description":"no","content":{"application/problem+json":{"schema":{"$ref":"#/components/schemas/Problem"}}}}}}}},
 "components":{"schemas":{
  "Thing":{"type":"object","required":["name"],"properties":{"name":{"type":"string"},"size":{"type":["integer","null"]}},"additionalProperties":false},
  "Problem":{"type":"object","required":["status"],"properties":{"status":{"type":"integer"}}}}}}`

// The checker finds what breaks the document, and nothing in what keeps it.
func TestChecker(t *testing.T) {
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		want                    string // in the one error expected; "" for none
	}{
		{"conforming", "/v1/things/a", "application/json", `{"name":"a","size":null}`, 200, ""},
		{"missing property", "/v1/things/a", "application/json", `{"size":1}`, 200, "name"},
		{"wrong type (3.1 type list)", "/v1/things/a", "application/json", `{"name":"a","size":"big"}`, 200, "size"},
		{"undocumented status", "/v1/things/a", "application/json", `{"name":"a"}`, 201, "201"},
		{"unknown path with a problem", "/v1/other", "application/problem+json", `{"status":404}`, 404, ""},
		{"unknown path with a bad problem", "/v1/other", "application/problem+json", `{"title":"x"}`, 404, "status"},
		{"unknown path answered", "/v1/other", "application/json", `{}`, 200, "not in the OpenAPI document"},
		{"error without problem type", "/v1/things", "text/plain", "no", 404, "Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			rec := &recorder{}
			chk := New(rec, []byte(doc))
			res, err := (&http.Client{Transport: chk.Transport(nil)}).Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			switch {
			case tc.want == "" && len(rec.errs) > 0:
				t.Fatalf("unexpected: %q", rec.errs)
			case tc.want != "" && (len(rec.errs) != 1 || !strings.Contains(rec.errs[0], tc.want)):
				t.Fatalf("want one error about %q, got %q", tc.want, rec.errs)
			}
		})
	}
}

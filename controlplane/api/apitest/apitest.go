// Package apitest holds Strait's HTTP API to its OpenAPI document in
// tests: a Checker wraps an http.RoundTripper and validates every request
// it carries and every response it brings back against the document with
// getkin/kin-openapi (a maintained OpenAPI 3.1 loader, router and
// request/response validator, with a JSON Schema 2020-12 validator
// underneath: writing one by hand would test our reading of the spec, not
// the spec), and records which operations and statuses were exercised.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

func init() {
	// SDP (RFC 8866) and trickle fragments (RFC 8840) are text: the
	// validator checks their presence and media type, not their grammar.
	openapi3filter.RegisterBodyDecoder("application/sdp", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/trickle-ice-sdpfrag", openapi3filter.PlainBodyDecoder)
}

// T is the part of testing.TB a Checker reports to.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Checker validates traffic against one OpenAPI document. It is safe for
// concurrent use.
type Checker struct {
	t      T              // frozen
	doc    *openapi3.T    // frozen after New
	router routers.Router // frozen after New

	mu   sync.Mutex          // guards seen
	seen map[string][]string // "METHOD /path/{template}" -> statuses seen
}

// New parses doc (JSON or YAML), validates it as an OpenAPI 3.1
// document, and returns a Checker.
func New(t T, doc []byte) *Checker {
	t.Helper()
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.1") || !d.IsOpenAPI31OrLater() {
		t.Fatalf("openapi: version %q, want 3.1", d.OpenAPI)
	}
	if err := d.Validate(context.Background()); err != nil {
		t.Fatalf("openapi: the document does not validate: %v", err)
	}
	// The document's one server is "/" (relative to where it is served):
	// route by path alone, whatever host the test server listens on.
	d.Servers = nil
	r, err := legacy.NewRouter(d)
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	return &Checker{t: t, doc: d, router: r, seen: map[string][]string{}}
}

// Operations lists "METHOD /path" for every operation in the document.
func (c *Checker) Operations() []string {
	var out []string
	for p, item := range c.doc.Paths.Map() {
		for m := range item.Operations() {
			out = append(out, strings.ToUpper(m)+" "+p)
		}
	}
	sort.Strings(out)
	return out
}

// Seen returns each exercised operation with the statuses it answered.
func (c *Checker) Seen() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for k, v := range c.seen {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Transport returns a RoundTripper that validates through base (nil:
// http.DefaultTransport). A request to a path or method the document
// does not have must be answered with a problem details body (404 or
// 405), which is checked against the document's Problem schema.
func (c *Checker) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
			req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		res, err := base.RoundTrip(req)
		if err != nil {
			return res, err
		}
		c.check(req, body, res)
		return res, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// check validates one exchange. Event streams are validated on their
// status and headers only: their body does not end.
func (c *Checker) check(req *http.Request, reqBody []byte, res *http.Response) {
	c.t.Helper()
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	what := req.Method + " " + req.URL.Path
	stream := isEventStream(res.Header.Get("Content-Type"))
	var resBody []byte
	if !stream {
		resBody, _ = io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(resBody))
	}
	route, params, err := c.router.FindRoute(vreq)
	if err == nil && slices.Contains(slices.Collect(maps.Values(params)), "") {
		// The router lets a template's last parameter match nothing
		// ("/v1/calls" as "/v1/calls/{id}"); a server does not.
		err = &routers.RouteError{Reason: routers.ErrPathNotFound.Error()}
	}
	if err != nil {
		// Not an operation: it must be refused with a problem.
		if req.Method == http.MethodOptions || req.Method == http.MethodHead {
			return
		}
		// The router returns fresh RouteErrors, not its sentinels.
		var re *routers.RouteError
		if !errors.As(err, &re) {
			c.t.Errorf("%s: %v", what, err)
			return
		}
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			c.t.Errorf("%s is not in the OpenAPI document, yet it answered %d", what, res.StatusCode)
			return
		}
		if res.StatusCode == http.StatusMethodNotAllowed && res.Header.Get("Allow") == "" {
			c.t.Errorf("%s: 405 without Allow (RFC 9110 section 15.5.6)", what)
		}
		c.checkProblem(what, res.Header.Get("Content-Type"), resBody)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && res.StatusCode < 400 {
		// A request the document forbids must not succeed.
		c.t.Errorf("%s: request accepted (%d) but invalid: %v", what, res.StatusCode, err)
	}
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(resBody)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: stream,
			MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("%s -> %d: response does not match the document: %v", what, res.StatusCode, err)
	}
	key := req.Method + " " + route.Path
	c.mu.Lock()
	c.seen[key] = append(c.seen[key], fmt.Sprint(res.StatusCode))
	c.mu.Unlock()
}

func isEventStream(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "text/event-stream"
}

// checkProblem validates a problem details body against the document's
// Problem schema.
func (c *Checker) checkProblem(what, ct string, body []byte) {
	c.t.Helper()
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/problem+json" {
		c.t.Errorf("%s: error with Content-Type %q, want application/problem+json", what, ct)
		return
	}
	if err := c.validate("Problem", body); err != nil {
		c.t.Errorf("%s: problem body %s: %v", what, body, err)
	}
}

// CheckSchema validates a JSON value against one of the document's
// component schemas (for bodies that arrive outside a response, such as
// the data of a server-sent event).
func (c *Checker) CheckSchema(name string, body []byte) {
	c.t.Helper()
	if err := c.validate(name, body); err != nil {
		c.t.Errorf("%s %s: %v", name, body, err)
	}
}

func (c *Checker) validate(name string, body []byte) error {
	c.t.Helper()
	sr := c.doc.Components.Schemas[name]
	if sr == nil || sr.Value == nil {
		c.t.Fatalf("openapi: no %s schema", name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return c.doc.ValidateSchemaJSON(sr.Value, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors())
}

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"

	"github.com/strait-sbc/strait/controlplane/api"
	"github.com/strait-sbc/strait/controlplane/api/apitest"
	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/config"
)

// TestOpenAPI drives every operation of the API through a running server
// and checks each request and response against /v1/openapi.json with a
// maintained OpenAPI 3.1 validator (controlplane/api/apitest), then that
// every operation of the document was exercised and answered with success.
func TestOpenAPI(t *testing.T) {
	// A web app (--app) that takes its calls' offers with 202 and
	// answers through the API.
	appOffers := make(chan apps.Incoming, 1)
	appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in apps.Incoming
		json.NewDecoder(r.Body).Decode(&in)
		appOffers <- in
		w.WriteHeader(http.StatusAccepted)
	}))
	defer appSrv.Close()
	e := start(t, func(c *config.Config) {
		c.Users = []string{"bob:b-secret"}
		c.APIToken = "s3cret"
		c.MaxCallRatePerUser = 5
		c.JWTSecretFile = secretFile(t)
		c.Apps = []string{"demo:_8XXX:" + secretFile(t) + ":" + appSrv.URL}
		c.AppAllowPrivate = true
		// The test's requests come fast from one source: the per-source
		// HTTP bucket must not answer them 429 (the dial plan's 429 is
		// the one checked below).
		c.HTTPRate, c.HTTPBurst = 1000, 1000
	})
	base := "http://" + e.srv.HTTPAddr()
	chk := apitest.New(t, api.OpenAPI())
	client := &http.Client{Transport: chk.Transport(nil)}
	// The document served is the one the checker holds, and needs no token.
	res, err := client.Get(base + "/v1/openapi.json")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("openapi.json: %v %v", res, err)
	}
	if doc, _ := io.ReadAll(res.Body); !json.Valid(doc) {
		t.Fatalf("openapi.json is not JSON: %.200s", doc)
	}
	res.Body.Close()
	bearer := "s3cret" // the credential do sends
	do := func(method, path, ctype, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	offer := func() string {
		b, _ := json.Marshal(newBrowserMedia(t).Offer)
		return string(b)
	}

	// bob registers, so that the registrations have one.
	bob := registered(t, e, "bob", "b-secret")
	if res, b := do("GET", "/v1/registrations", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), `"bob"`) {
		t.Fatalf("registrations: %d %s", res.StatusCode, b)
	}
	// A call to bob, who answers and takes DTMF as SIP INFO.
	type result struct {
		res *http.Response
		b   []byte
	}
	placed := make(chan result, 1)
	go func() {
		res, b := do("POST", "/v1/calls", "application/json", `{"to":"bob","offer":`+offer()+`}`)
		placed <- result{res, b}
	}()
	inc, err := bob.WaitCall(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go inc.Answer(newAnswerer(t).answer(t, inc.Invite.Body()))
	r := <-placed
	if r.res.StatusCode != 201 {
		t.Fatalf("POST /v1/calls to bob: %d %s", r.res.StatusCode, r.b)
	}
	var toBob api.CallResponse
	json.Unmarshal(r.b, &toBob)
	if res, b := do("POST", "/v1/calls/"+toBob.ID+"/dtmf", "application/json", `{"digits":"5"}`); res.StatusCode != 204 {
		t.Fatalf("dtmf: %d %s", res.StatusCode, b)
	}
	if info, err := bob.WaitRequest(sip.INFO, 5*time.Second); err != nil || !strings.Contains(string(info.Body()), "Signal=5") {
		t.Fatalf("INFO at bob: %v %v", info, err)
	}
	if res, b := do("DELETE", "/v1/calls/"+toBob.ID, "", ""); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", res.StatusCode, b)
	}

	// A call to a web app, answered through POST /v1/calls/{id}/answer.
	go func() {
		res, b := do("POST", "/v1/calls", "application/json", `{"to":"8001","offer":`+offer()+`}`)
		placed <- result{res, b}
	}()
	in := <-appOffers
	if res, b := do("POST", in.AnswerURL, "application/json", `{"answer":"v=0","reject":486}`); res.StatusCode != 400 {
		t.Fatalf("answer and reject: %d %s", res.StatusCode, b)
	}
	answer, _ := json.Marshal(map[string]string{"answer": string(newAnswerer(t).answer(t, []byte(in.Offer)))})
	if res, b := do("POST", in.AnswerURL, "application/json", string(answer)); res.StatusCode != 204 {
		t.Fatalf("app answer: %d %s", res.StatusCode, b)
	}
	if r := <-placed; r.res.StatusCode != 201 {
		t.Fatalf("POST /v1/calls to the app: %d %s", r.res.StatusCode, r.b)
	}
	if res, b := do("GET", in.CallURL, "", ""); res.StatusCode != 200 || !strings.Contains(string(b), `"app":"demo"`) {
		t.Fatalf("the app's call: %d %s", res.StatusCode, b)
	}
	if res, b := do("DELETE", in.CallURL, "", ""); res.StatusCode != 204 {
		t.Fatalf("DELETE the app's call: %d %s", res.StatusCode, b)
	}

	// WHIP: an offer to echo, then DELETE on its Location.
	wb := newBrowserMedia(t)
	res, b := do("POST", "/whip/echo", "application/sdp", wb.Offer)
	if res.StatusCode != 201 || !strings.HasPrefix(res.Header.Get("Location"), "/whip/sessions/") || !strings.HasPrefix(string(b), "v=0") {
		t.Fatalf("WHIP: %d %v %s", res.StatusCode, res.Header, b)
	}
	if res, b := do("DELETE", res.Header.Get("Location"), "", ""); res.StatusCode != 200 {
		t.Fatalf("WHIP DELETE: %d %s", res.StatusCode, b)
	}
	if res, _ := do("PATCH", res.Header.Get("Location"), "application/trickle-ice-sdpfrag", "a=end-of-candidates\r\n"); res.StatusCode != 405 {
		t.Fatalf("WHIP PATCH: %d", res.StatusCode)
	}

	// A call to echo, followed on its event stream.
	res, b = do("POST", "/v1/calls", "application/json", `{"to":"echo","offer":`+offer()+`}`)
	if res.StatusCode != 201 || res.Header.Get("Location") == "" {
		t.Fatalf("POST /v1/calls: %d %s", res.StatusCode, b)
	}
	var created api.CallResponse
	json.Unmarshal(b, &created)
	sreq, _ := http.NewRequest("GET", base+"/v1/calls/"+created.ID+"/events", nil)
	sreq.Header.Set("Authorization", "Bearer s3cret")
	stream, err := client.Do(sreq)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	if res, b := do("GET", "/v1/calls", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), created.ID) {
		t.Fatalf("calls: %d %s", res.StatusCode, b)
	}
	if res, b := do("GET", "/v1/calls/"+created.ID, "", ""); res.StatusCode != 200 {
		t.Fatalf("call: %d %s", res.StatusCode, b)
	}
	// The echo extension has no SIP leg to take INFO: 501.
	if res, b := do("POST", "/v1/calls/"+created.ID+"/dtmf", "application/json", `{"digits":"1#"}`); res.StatusCode != 501 {
		t.Fatalf("dtmf: %d %s", res.StatusCode, b)
	}
	if res, b := do("DELETE", "/v1/calls/"+created.ID, "", ""); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", res.StatusCode, b)
	}
	ended := false
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			chk.CheckSchema("Event", []byte(d))
			ended = ended || strings.Contains(d, `"state":"ended"`)
		}
	}
	if !ended {
		t.Fatal("the call's event stream ended without an ended event")
	}
	if res, _ := do("GET", "/v1/calls/"+created.ID, "", ""); res.StatusCode != 404 {
		t.Fatalf("ended call: %d", res.StatusCode)
	}
	if res, _ := do("DELETE", "/v1/calls/"+created.ID, "", ""); res.StatusCode != 404 {
		t.Fatalf("ended call: %d", res.StatusCode)
	}
	if res, b := do("GET", "/v1/cdrs", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), created.ID) {
		t.Fatalf("cdrs: %d %s", res.StatusCode, b)
	}
	// The all-calls stream answers and is dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	sreq, _ = http.NewRequestWithContext(ctx, "GET", base+"/v1/events?call=x", nil)
	sreq.Header.Set("Authorization", "Bearer s3cret")
	if stream, err := client.Do(sreq); err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	} else {
		stream.Body.Close()
	}
	cancel()

	// Failures, each a problem the document describes.
	if res, _ := do("POST", "/v1/calls", "application/json", `{"to":"nobody","offer":`+offer()+`}`); res.StatusCode != 404 {
		t.Fatalf("call to nobody: %d", res.StatusCode)
	}
	if res, _ := do("POST", "/v1/calls", "text/plain", `{"to":"echo","offer":"v=0"}`); res.StatusCode != 415 {
		t.Fatalf("text/plain: %d", res.StatusCode)
	}
	if res, _ := do("POST", "/v1/calls", "", `{"to":"echo","offer":"v=0`+strings.Repeat(" ", 1<<20)+`"}`); res.StatusCode != 413 {
		t.Fatalf("1 MB: %d", res.StatusCode)
	}
	if res, _ := do("POST", "/v1/calls", "application/json", `{"to":"echo"}`); res.StatusCode != 400 {
		t.Fatalf("no offer: %d", res.StatusCode)
	}
	if res, _ := do("DELETE", "/v1/calls", "", ""); res.StatusCode != 405 || res.Header.Get("Allow") != "POST, GET, HEAD" {
		t.Fatalf("DELETE /v1/calls: %d %q", res.StatusCode, res.Header.Get("Allow"))
	}
	if res, _ := do("GET", "/v1/nothing", "", ""); res.StatusCode != 404 {
		t.Fatalf("/v1/nothing: %d", res.StatusCode)
	}
	// The dial plan's rate (5 a minute here) gives 429 with Retry-After.
	limited := false
	for i := 0; i < 4 && !limited; i++ {
		res, _ := do("POST", "/v1/calls", "application/json", `{"to":"nobody","offer":`+offer()+`}`)
		limited = res.StatusCode == 429 && res.Header.Get("Retry-After") != ""
	}
	if !limited {
		t.Fatal("no 429 past the dial plan's rate")
	}
	if err := e.srv.History.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, b := do("GET", "/v1/history?user=bob&limit=5", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), toBob.ID) {
		t.Fatalf("history: %d %s", res.StatusCode, b)
	}
	if res, b := do("POST", "/v1/tokens", "application/json", `{"user":"alice","scopes":["call"],"ttl_s":60}`); res.StatusCode != 201 {
		t.Fatalf("tokens: %d %s", res.StatusCode, b)
	}
	// Presence and contacts, as bob with a token minted for him.
	res, b = do("POST", "/v1/tokens", "application/json", `{"user":"bob","scopes":["user"],"ttl_s":60}`)
	var minted struct{ Token string }
	if json.Unmarshal(b, &minted); res.StatusCode != 201 || minted.Token == "" {
		t.Fatalf("token for bob: %d %s", res.StatusCode, b)
	}
	bearer = minted.Token
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	preq, _ := http.NewRequestWithContext(pctx, "GET", base+"/v1/events/presence", nil)
	preq.Header.Set("Authorization", "Bearer "+bearer)
	pstream, err := client.Do(preq)
	if err != nil || pstream.StatusCode != 200 {
		t.Fatalf("presence events: %v %v", pstream, err)
	}
	defer pstream.Body.Close()
	if res, b := do("PUT", "/v1/presence", "application/json", `{"status":"busy","note":"on a call"}`); res.StatusCode != 200 {
		t.Fatalf("PUT presence: %d %s", res.StatusCode, b)
	}
	psc := bufio.NewScanner(pstream.Body)
	heard := false
	for !heard && psc.Scan() {
		if d, ok := strings.CutPrefix(psc.Text(), "data: "); ok {
			chk.CheckSchema("Presence", []byte(d))
			heard = strings.Contains(d, `"status":"busy"`)
		}
	}
	if !heard {
		t.Fatal("the presence stream did not carry bob's change")
	}
	if res, b := do("GET", "/v1/presence/bob", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), `"busy"`) {
		t.Fatalf("GET presence: %d %s", res.StatusCode, b)
	}
	if res, b := do("GET", "/v1/contacts", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), `"bob"`) {
		t.Fatalf("contacts: %d %s", res.StatusCode, b)
	}
	if res, _ := do("PUT", "/v1/presence", "application/json", `{"status":"online"}`); res.StatusCode != 400 {
		t.Fatalf("PUT a bad status: %d", res.StatusCode)
	}
	// An instant message to bob himself: his API listener and his
	// registered browser both get it.
	mreq, _ := http.NewRequestWithContext(pctx, "GET", base+"/v1/events/messages", nil)
	mreq.Header.Set("Authorization", "Bearer "+bearer)
	mstream, err := client.Do(mreq)
	if err != nil || mstream.StatusCode != 200 {
		t.Fatalf("message events: %v %v", mstream, err)
	}
	defer mstream.Body.Close()
	if res, b := do("POST", "/v1/messages", "application/json", `{"to":"bob","text":"note to self"}`); res.StatusCode != 201 || !strings.Contains(string(b), `"sip_status":200`) {
		t.Fatalf("POST message: %d %s", res.StatusCode, b)
	}
	msc := bufio.NewScanner(mstream.Body)
	heard = false
	for !heard && msc.Scan() {
		if d, ok := strings.CutPrefix(msc.Text(), "data: "); ok {
			chk.CheckSchema("Message", []byte(d))
			heard = strings.Contains(d, `"note to self"`)
		}
	}
	if !heard {
		t.Fatal("the message stream did not carry the message")
	}
	if res, b := do("GET", "/v1/messages", "", ""); res.StatusCode != 200 || !strings.Contains(string(b), `"messages":[]`) {
		t.Fatalf("GET kept messages: %d %s", res.StatusCode, b)
	}
	bearer = "s3cret"
	if res, _ := do("POST", "/v1/tokens", "application/json", `{"user":"alice","scopes":["root"]}`); res.StatusCode != 400 {
		t.Fatalf("tokens with a bad scope: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/v1/cdrs", nil)
	if res, err := client.Do(req); err != nil || res.StatusCode != 401 {
		t.Fatalf("no token: %v %v", res, err)
	} else {
		res.Body.Close()
	}

	seen := chk.Seen()
	for _, op := range chk.Operations() {
		if !slices.ContainsFunc(seen[op], func(s string) bool { return s[0] == '2' }) {
			t.Errorf("%s was not exercised with success (statuses %v)", op, seen[op])
		}
	}
	var all []string
	for _, st := range seen {
		all = append(all, st...)
	}
	for _, want := range []string{"400", "401", "404", "413", "415", "429", "501"} {
		if !slices.Contains(all, want) {
			t.Errorf("no %s was seen", want)
		}
	}
}

// Pages from the configured origins may use the API (CORS preflights pass
// without a token; answers carry Access-Control-Allow-Origin); others get
// no CORS headers. /ws takes WebSockets from those origins, the server's
// own and non-browsers, and refuses the rest with 403.
func TestCORSAndWebSocketOrigin(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.APIToken = "s3cret"
		c.CORSOrigins = []string{"https://app.example.com", "http://127.0.0.1:*"}
	})
	base := "http://" + e.srv.HTTPAddr()
	preflightFor := func(origin, method string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", base+"/v1/calls", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	preflight := func(origin string) *http.Response { return preflightFor(origin, "POST") }
	// Every method the API serves passes a preflight (PUT /v1/presence
	// was once missing from the list).
	for _, r := range api.New(api.Config{}).Routes() {
		if res := preflightFor("https://app.example.com", r.Method); res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") == "" {
			t.Errorf("preflight for %s %s: %d %v", r.Method, r.Path, res.StatusCode, res.Header)
		}
	}
	res := preflight("https://app.example.com")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("allowed preflight: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example.net"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin allowed: %v", res.Header)
	}
	get := func(origin, token string) *http.Response {
		req, _ := http.NewRequest("GET", base+"/v1/calls", nil)
		req.Header.Set("Origin", origin)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := get("https://app.example.com", "s3cret"); res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("allowed GET: %d %v", res.StatusCode, res.Header)
	}
	// A 401 is readable by the allowed page too (it must learn why).
	if res := get("https://app.example.com", "wrong"); res.StatusCode != 401 || res.Header.Get("Access-Control-Allow-Origin") == "" ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Www-Authenticate") {
		t.Fatalf("401 to an allowed page: %d %v", res.StatusCode, res.Header)
	}
	if res := get("https://evil.example.net", "s3cret"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET from another origin readable: %v", res.Header)
	}

	dial := func(origin string) error {
		d := ws.Dialer{Protocols: []string{"sip"}, Timeout: 5 * time.Second}
		if origin != "" {
			d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
		}
		c, _, _, err := d.Dial(context.Background(), "ws://"+e.srv.HTTPAddr()+"/ws")
		if c != nil {
			c.Close()
		}
		return err
	}
	for _, origin := range []string{"", "https://app.example.com", "http://127.0.0.1:9999", "http://" + e.srv.HTTPAddr()} {
		if err := dial(origin); err != nil {
			t.Errorf("WebSocket from %q refused: %v", origin, err)
		}
	}
	err := dial("https://evil.example.net")
	var status ws.StatusError
	if err == nil || !errors.As(err, &status) || int(status) != 403 {
		t.Fatalf("WebSocket from another origin: %v", err)
	}
}

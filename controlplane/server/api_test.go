package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func (c apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		if s, ok := body.(string); ok {
			b = []byte(s)
		}
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func TestAPICalls(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Users = []string{"bob:b-secret"}
		c.APIToken = "s3cret"
	})
	api := apiClient{t: t, base: "http://" + e.srv.HTTPAddr(), token: "s3cret"}

	if code, body := (apiClient{t: t, base: api.base}).do("GET", "/v1/calls", nil); code != 401 || !strings.Contains(string(body), `"detail"`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	for _, bad := range []string{`{`, `{"to":"echo"}`, `{"offer":"v=0"}`, `{"to":"echo","offer":"hello"}`, `{"to":"echo","offer":"v=0","x":1}`, ``} {
		if code, body := api.do("POST", "/v1/calls", bad); code != 400 || !strings.Contains(string(body), `"detail"`) {
			t.Fatalf("bad body %q: %d %s", bad, code, body)
		}
	}
	if code, body := api.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": "v=0\r\nbroken"}); code != 400 {
		t.Fatalf("malformed SDP: %d %s", code, body)
	}

	// Follow the event stream.
	req, _ := http.NewRequest("GET", api.base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	events := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
	}()

	// A web app calls the echo extension.
	mb := newBrowserMedia(t)
	code, body := api.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": mb.Offer})
	if code != 201 {
		t.Fatalf("POST /v1/calls: %d %s", code, body)
	}
	var created struct{ ID, Answer string }
	json.Unmarshal(body, &created)
	if err := mb.Accept(created.Answer); err != nil {
		t.Fatalf("answer: %v\n%s", err, created.Answer)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	for i := 0; i < 5; i++ {
		mb.Send(0, uint16(i), uint32(160*i), false, payload("api-echo", i))
		time.Sleep(2 * time.Millisecond)
	}
	receive(t, mb, "api-echo", 5)
	if code, body := api.do("GET", "/v1/calls/"+created.ID, nil); code != 200 || !strings.Contains(string(body), `"state":"answered"`) {
		t.Fatalf("GET call: %d %s", code, body)
	}
	if code, body := api.do("GET", "/v1/calls", nil); code != 200 || !strings.Contains(string(body), created.ID) {
		t.Fatalf("GET calls: %d %s", code, body)
	}
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	e.waitSessions(0)
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 404 {
		t.Fatalf("second DELETE: %d", code)
	}
	waitEvent(t, events, created.ID, "answered")
	waitEvent(t, events, created.ID, "ended")

	// A web app calls a registered browser; DTMF goes as SIP INFO.
	bob := registered(t, e, "bob", "b-secret")
	mb2 := newBrowserMedia(t)
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		c, b := api.do("POST", "/v1/calls", map[string]any{"to": "sip:bob@example.com", "from": "webapp", "offer": mb2.Offer})
		done <- result{c, b}
	}()
	inc, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inc.Invite.From().Address.User != "webapp" {
		t.Fatalf("caller %s", inc.Invite.From().Address.String())
	}
	ans := newAnswerer(t)
	go inc.Answer(ans.answer(t, inc.Invite.Body()))
	r := <-done
	if r.code != 201 {
		t.Fatalf("POST /v1/calls to bob: %d %s", r.code, r.body)
	}
	json.Unmarshal(r.body, &created)
	if err := mb2.Accept(created.Answer); err != nil {
		t.Fatal(err)
	}
	if err := mb2.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ans.waitConnected(t)
	e.waitConnected()
	ans.send(t, "bob2app", 5)
	receive(t, mb2, "bob2app", 5)
	if code, body := api.do("POST", "/v1/calls/"+created.ID+"/dtmf", map[string]any{"digits": "12#"}); code != 204 {
		t.Fatalf("DTMF: %d %s", code, body)
	}
	for _, d := range []string{"1", "2", "#"} {
		info, err := bob.WaitRequest(sip.INFO, 5*time.Second)
		if err != nil || !strings.Contains(string(info.Body()), "Signal="+d) || info.ContentType().Value() != "application/dtmf-relay" {
			t.Fatalf("INFO %s at bob: %v %v", d, info, err)
		}
	}
	if code, _ := api.do("POST", "/v1/calls/"+created.ID+"/dtmf", map[string]any{"digits": "12x"}); code != 400 {
		t.Fatalf("bad DTMF: %d", code)
	}
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("bob never got the BYE")
	}
	e.waitSessions(0)

	// A callee that is not there: 404 with the SIP status.
	if code, body := api.do("POST", "/v1/calls", map[string]any{"to": "nobody", "offer": newBrowserMedia(t).Offer}); code != 404 || !strings.Contains(string(body), `"sip_status":404`) {
		t.Fatalf("call to nobody: %d %s", code, body)
	}

	code, body = api.do("GET", "/v1/cdrs", nil)
	var cdrs struct {
		CDRs []struct {
			ID, Direction string
			Media         []json.RawMessage
		} `json:"cdrs"`
	}
	json.Unmarshal(body, &cdrs)
	if code != 200 || len(cdrs.CDRs) != 2 || cdrs.CDRs[0].Direction != "echo" || cdrs.CDRs[1].Direction != "api" || len(cdrs.CDRs[1].Media) != 2 {
		t.Fatalf("CDRs: %d %s", code, body)
	}
	if lines := e.cdrLines(); len(lines) != 2 {
		t.Fatalf("CDR file has %d lines", len(lines))
	}
	code, body = api.do("GET", "/metrics", nil)
	for _, want := range []string{"strait_calls_ended_total", "strait_registrations 1", `strait_sip_requests_total{direction="out",method="INVITE"}`, "strait_dataplane_sessions"} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, _ := (apiClient{t: t, base: api.base}).do("GET", "/metrics", nil); code != 401 {
		t.Fatalf("metrics without token: %d", code)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := api.do("GET", p, nil); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
}

func waitEvent(t *testing.T, events <-chan string, id, state string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case d := <-events:
			if strings.Contains(d, `"call":"`+id+`"`) && strings.Contains(d, `"state":"`+state+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s event for %s", state, id)
		}
	}
}

// The web page (another package) mounts at /; /ws, /v1 and the rest stay
// Strait's.
func TestRootHandler(t *testing.T) {
	n := newNode(t)
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := New(Options{Config: cfg, Log: testLog(t), Nodes: nodesOf(n),
		Root: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("web phone")) })})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := apiClient{t: t, base: "http://" + srv.HTTPAddr()}
	if code, body := api.do("GET", "/", nil); code != 200 || string(body) != "web phone" {
		t.Fatalf("/: %d %s", code, body)
	}
	if code, body := api.do("GET", "/ws", nil); code != 426 {
		t.Fatalf("/ws without upgrade: %d %s", code, body)
	}
	if code, body := api.do("GET", "/v1/nothing", nil); code != 404 || !strings.Contains(string(body), `"detail"`) {
		t.Fatalf("/v1/nothing: %d %s", code, body)
	}
}

// A remote dataplane node over gRPC carries the calls just as the
// in-process one does.
func TestRemoteDataplane(t *testing.T) {
	t.Run("loopback", func(t *testing.T) { remoteDataplane(t, false) })
	t.Run("mutual TLS", func(t *testing.T) { remoteDataplane(t, true) })
}

// remoteDataplane places an API call through a node served over gRPC, as
// strait --dataplane grpc://... does, with or without mutual TLS.
func remoteDataplane(t *testing.T, mtls bool) {
	n := newNode(t)
	cfg := testConfig()
	var opts []grpc.ServerOption
	if mtls {
		pki, err := tlsconfig.GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		tc, err := tlsconfig.Server(pki.ServerCert, pki.ServerKey, pki.CA)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		cfg.DataplaneCert, cfg.DataplaneKey, cfg.DataplaneCA = pki.ClientCert, pki.ClientKey, pki.CA
	}
	gs := grpc.NewServer(opts...)
	pb.RegisterDataplaneServer(gs, pb.NewServer(n))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Dataplane = []string{"grpc://" + lis.Addr().String()}
	srv, err := New(Options{Config: cfg, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := apiClient{t: t, base: "http://" + srv.HTTPAddr()}
	mb := newBrowserMedia(t)
	code, body := api.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": mb.Offer})
	if code != 201 {
		t.Fatalf("POST /v1/calls: %d %s", code, body)
	}
	var created struct{ ID, Answer string }
	json.Unmarshal(body, &created)
	if err := mb.Accept(created.Answer); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, node: n}
	e.waitConnected()
	for i := 0; i < 5; i++ {
		mb.Send(0, uint16(i), uint32(160*i), false, payload("remote", i))
		time.Sleep(2 * time.Millisecond)
	}
	receive(t, mb, "remote", 5)
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	e.waitSessions(0)
}

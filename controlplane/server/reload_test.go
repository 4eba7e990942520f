package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/internal/tlsconfig"
)

// pkiClient trusts the CA of p and records the serial of the certificate
// the server presented last.
type pkiClient struct {
	t      *testing.T
	tc     *tls.Config
	base   string
	token  string
	serial string
}

func newPKIClient(t *testing.T, p tlsconfig.PKI, base string) *pkiClient {
	ca, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &pkiClient{t: t, base: base}
	c.tc = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", VerifyConnection: func(cs tls.ConnectionState) error {
		c.serial = cs.PeerCertificates[0].SerialNumber.String()
		return nil
	}}
	return c
}

// do makes a request on a new connection.
func (c *pkiClient) do(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tc, DisableKeepAlives: true}, Timeout: 20 * time.Second}
	res, err := cl.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, nil
}

func serialOf(t *testing.T, p tlsconfig.PKI) string {
	t.Helper()
	c, err := tlsconfig.LoadCertificate(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf().SerialNumber.String()
}

// Issue 8 item 10. A certificate replaced on disk and a Reload (what
// SIGHUP does): new HTTPS, WSS and SIP TLS connections get the new
// certificate, while a call in progress, its media and a WebSocket opened
// before go on; the dial plan and the API token change at once; settings
// that need a restart are named and left as they were.
func TestReloadSwapsCertificateKeepsCalls(t *testing.T) {
	old, err := tlsconfig.GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	e := start(t, func(c *config.Config) {
		c.TLSCert, c.TLSKey = old.ServerCert, old.ServerKey
		c.SIPTLS = "127.0.0.1:0"
		c.APIToken = "first"
		cfg = *c
	})
	base := "https://" + e.srv.HTTPAddr()
	api := newPKIClient(t, old, base)
	api.token = "first"
	oldSerial := serialOf(t, old)

	// A call in progress through the HTTPS API, with media.
	mb := newBrowserMedia(t)
	code, body, err := api.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": mb.Offer})
	if err != nil || code != 201 {
		t.Fatalf("POST /v1/calls: %d %s %v", code, body, err)
	}
	if api.serial != oldSerial {
		t.Fatalf("served serial %s, want %s", api.serial, oldSerial)
	}
	var created struct{ ID, Answer string }
	json.Unmarshal(body, &created)
	if err := mb.Accept(created.Answer); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	var seq uint16
	echo := func(tag string) {
		t.Helper()
		for i := range 5 {
			seq++
			mb.Send(0, seq, uint32(160)*uint32(seq), false, payload(tag, i))
			time.Sleep(2 * time.Millisecond)
		}
		receive(t, mb, tag, 5)
	}
	echo("before")

	// A WebSocket (WSS) opened before the swap.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wss, _, _, err := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: api.tc}.Dial(wctx, e.srv.WSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer wss.Close()
	options := func() string {
		t.Helper()
		msg := "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WSS abc.invalid;branch=z9hG4bK" + fmt.Sprint(time.Now().UnixNano()) + "\r\n" +
			"Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\nFrom: <sip:probe@127.0.0.1>;tag=x\r\nCall-ID: " + fmt.Sprint(time.Now().UnixNano()) +
			"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		if err := wsutil.WriteClientText(wss, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		wss.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := wsutil.ReadServerText(wss)
		if err != nil {
			t.Fatal(err)
		}
		return strings.SplitN(string(res), "\r\n", 2)[0]
	}
	if got := options(); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS over WSS: %s", got)
	}

	// The certificate is renewed on disk (another CA, so that which one
	// is served is beyond doubt).
	renewed, err := tlsconfig.GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{renewed.ServerCert, old.ServerCert}, {renewed.ServerKey, old.ServerKey}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newSerial := serialOf(t, renewed)
	next := cfg
	next.AllowDial = []string{"_1XXX"}
	next.APIToken = "second"
	next.RingTimeout = cfg.RingTimeout + time.Minute
	restart, err := e.srv.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(restart, []string{"--ring-timeout"}) {
		t.Fatalf("need a restart: %v, want [--ring-timeout]", restart)
	}

	// New connections: the new certificate, on HTTPS and SIP TLS.
	fresh := newPKIClient(t, renewed, base)
	fresh.token = "second"
	if code, body, err := fresh.do("GET", "/v1/calls", nil); err != nil || code != 200 || fresh.serial != newSerial {
		t.Fatalf("HTTPS after reload: %d %s %v, serial %s want %s", code, body, err, fresh.serial, newSerial)
	}
	sipTLS := fmt.Sprintf("127.0.0.1:%d", e.srv.Stack.Port("TLS"))
	conn, err := tls.Dial("tcp", sipTLS, fresh.tc)
	if err != nil {
		t.Fatalf("SIP TLS after reload: %v", err)
	}
	conn.Close()
	if fresh.serial != newSerial {
		t.Fatalf("SIP TLS serves %s, want %s", fresh.serial, newSerial)
	}
	if _, _, err := api.do("GET", "/v1/calls", nil); err == nil {
		t.Fatal("a client trusting only the old CA still connects")
	}
	// Only modern suites, on both listeners: a TLS 1.2 client offering
	// only CBC suites is refused.
	cbc := fresh.tc.Clone()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA}
	for _, addr := range []string{e.srv.HTTPAddr(), sipTLS} {
		if c, err := tls.Dial("tcp", addr, cbc); err == nil {
			c.Close()
			t.Fatalf("%s accepted a CBC-only TLS 1.2 client", addr)
		}
	}

	// What was up stays up: the WebSocket, the call and its media.
	if got := options(); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS over the old WSS after reload: %s", got)
	}
	echo("after")

	// The API token and the dial plan changed.
	fresh.token = "first"
	if code, _, _ := fresh.do("GET", "/v1/calls", nil); code != 401 {
		t.Fatalf("the old token: %d, want 401", code)
	}
	fresh.token = "second"
	mb2 := newBrowserMedia(t)
	if code, body, _ := fresh.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": mb2.Offer}); code != 403 {
		t.Fatalf("echo outside the new allowlist: %d %s", code, body)
	}
	if code, body, err := fresh.do("DELETE", "/v1/calls/"+created.ID, nil); err != nil || code != 204 {
		t.Fatalf("hang up: %d %s %v", code, body, err)
	}
	e.waitCalls(0)
	if last := e.cdrLines(); !strings.Contains(last[len(last)-1], `"reason":"api hangup"`) {
		t.Fatalf("CDR %s", last[len(last)-1])
	}

	// A broken configuration changes nothing.
	bad := next
	bad.AllowDial = []string{"_["}
	if _, err := e.srv.Reload(bad); err == nil {
		t.Fatal("a bad dial plan reloaded")
	}
	if code, _, _ := fresh.do("GET", "/v1/calls", nil); code != 200 {
		t.Fatalf("after a refused reload: %d", code)
	}
}

// Users change live: a removed user's bindings go (and it cannot register
// again), a new one registers; from no users (open registration) is a
// restart.
func TestReloadUsers(t *testing.T) {
	var cfg config.Config
	e := start(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret"}
		cfg = *c
	})
	alice := registered(t, e, "alice", "a-secret")
	registered(t, e, "bob", "b-secret")
	next := cfg
	next.Users = []string{"bob:b-secret", "dave:d-secret"}
	if restart, err := e.srv.Reload(next); err != nil || len(restart) != 0 {
		t.Fatalf("reload: %v %v", restart, err)
	}
	if bs := e.srv.Registry.Lookup("alice"); len(bs) != 0 {
		t.Fatalf("alice still bound: %v", bs)
	}
	if bs := e.srv.Registry.Lookup("bob"); len(bs) != 1 {
		t.Fatalf("bob lost his binding: %v", bs)
	}
	if res, err := alice.Register(ctx(t), "a-secret", 600); err != nil || res.StatusCode != 401 {
		t.Fatalf("removed alice registers: %v %v", res, err)
	}
	registered(t, e, "dave", "d-secret")

	open := start(t, nil)
	openCfg := testConfig()
	openCfg.HTTP, openCfg.SIP, openCfg.OptionsInterval = "127.0.0.1:0", "127.0.0.1:0", 0
	openCfg.Users = []string{"eve:e-secret"}
	if restart, err := open.srv.Reload(openCfg); err != nil || !slices.Contains(restart, "--user") {
		t.Fatalf("users on an open registrar: %v %v, want --user to need a restart", restart, err)
	}
}

package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/internal/tlsconfig"
)

// With a certificate, one port serves HTTPS (API, page) and WSS (SIP):
// a browser-like client registers over wss://HOST/ws.
func TestWSSOnTheHTTPSPort(t *testing.T) {
	pki, err := tlsconfig.GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *config.Config) { c.TLSCert, c.TLSKey = pki.ServerCert, pki.ServerKey })
	ca, _ := os.ReadFile(pki.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	res, err := cl.Get("https://" + e.srv.HTTPAddr() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("HTTPS: %v %v", res, err)
	}
	res.Body.Close()
	if !strings.HasPrefix(e.srv.WSURL(), "wss://") {
		t.Fatalf("WSURL %s", e.srv.WSURL())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: tc}.Dial(ctx, e.srv.WSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK1234567\r\n" +
		"Max-Forwards: 69\r\nTo: <sip:anyone@127.0.0.1>\r\nFrom: <sip:anyone@127.0.0.1>;tag=x1\r\n" +
		"Call-ID: wss-test\r\nCSeq: 1 REGISTER\r\nExpires: 600\r\n" +
		"Contact: <sip:u1@abc.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\";expires=600\r\n" +
		"Content-Length: 0\r\n\r\n"
	if err := wsutil.WriteClientText(conn, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	msg, err := wsutil.ReadServerText(conn)
	if err != nil || !strings.HasPrefix(string(msg), "SIP/2.0 200") {
		t.Fatalf("REGISTER over WSS: %q %v", msg, err)
	}
	if e.srv.Registry.Len() != 1 {
		t.Fatal("no binding")
	}
}

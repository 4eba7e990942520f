package server

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/internal/tlsconfig"
)

// testDNS is a real DNS server (miekg/dns) on loopback that answers A
// queries for names from a table and counts every query.
type testDNS struct {
	addr    string
	queries atomic.Int64
}

func startTestDNS(t *testing.T, a map[string]string) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		d.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.TrimSuffix(strings.ToLower(q.Question[0].Name), ".")
		ip, ok := a[name]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + ". 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

// tlsFiles loads a certificate pair and a CA pool for a test peer.
func tlsFiles(t *testing.T, cert, key, ca string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return c, pool
}

// Issue 9 item 2: SIP over TLS toward a PBX with a private-CA certificate
// for its name, with mutual TLS. Strait checks the PBX's name, shows its
// client certificate, and recognises the PBX's own TLS connections by
// their certificate; a peer with another certificate is refused.
func TestUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	// The PBX's PKI: its certificate for pbx.test, and the client
	// certificate Strait shows it. Strait's listener has one of its own.
	pbxPKI, err := tlsconfig.GeneratePKI(filepath.Join(dir, "pbx"), []string{"pbx.test"})
	if err != nil {
		t.Fatal(err)
	}
	straitPKI, err := tlsconfig.GeneratePKI(filepath.Join(dir, "strait"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pbxCert, pbxCA := tlsFiles(t, pbxPKI.ServerCert, pbxPKI.ServerKey, pbxPKI.CA)
	_, straitCA := tlsFiles(t, straitPKI.ServerCert, straitPKI.ServerKey, straitPKI.CA)
	var clientCerts atomic.Int64
	server := &tls.Config{Certificates: []tls.Certificate{pbxCert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pbxCA,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0].Subject.CommonName == "strait-control-plane" {
				clientCerts.Add(1)
			}
			return nil
		}}
	// The PBX connects to Strait's listener showing its own certificate.
	client := &tls.Config{RootCAs: straitCA, Certificates: []tls.Certificate{pbxCert}, MinVersion: tls.VersionTLS12}
	pbx, err := siptest.NewTLS("", "pbx", server, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	names := startTestDNS(t, map[string]string{"pbx.test": "127.0.0.1", "wrong.test": "127.0.0.1"})
	_, pbxPort, _ := net.SplitHostPort(pbx.Addr)
	e := start(t, func(c *config.Config) {
		c.Upstream = []string{"sip:pbx.test:" + pbxPort + ";transport=tls"}
		c.DNSServer = names.addr
		c.UpstreamCA, c.UpstreamCert, c.UpstreamKey = pbxPKI.CA, pbxPKI.ClientCert, pbxPKI.ClientKey
		c.TLSCert, c.TLSKey, c.SIPTLS = straitPKI.ServerCert, straitPKI.ServerKey, "127.0.0.1:0"
	})
	pbx.SetPeer(straitTLS(t, e))
	b, err := siptest.NewSecureBrowser(e.srv.HTTPAddr(), "alice", straitCA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	tr := &trunk{env: e, pbx: pbx, reg: reg, browser: b}
	binding := tr.register(t)
	if clientCerts.Load() == 0 {
		t.Fatal("Strait did not show its client certificate")
	}
	for _, r := range reg.Seen() {
		if r.Recipient.Host != "pbx.test" || r.Transport() != "TLS" {
			t.Fatalf("REGISTER at the PBX for %s over %s, want pbx.test over TLS", r.Recipient.Host, r.Transport())
		}
	}
	call, inc, _ := tr.establish(t)
	if inc.Invite.Transport() != "TLS" || inc.Invite.Recipient.Host != "pbx.test" {
		t.Fatalf("INVITE %s over %s", inc.Invite.Recipient.String(), inc.Invite.Transport())
	}
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The PBX calls the browser over a TLS connection of its own, to
	// Strait's listener: its certificate says it is pbx.test.
	offer := siptest.PlainSDP(1, newPlain(t).Addr(), newPlain(t).Addr(), "sendrecv", false)
	in, err := pbx.Invite(ctx(t), binding.Contact.User, offer)
	if err != nil {
		t.Fatal(err)
	}
	rung, err := b.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("the PBX's call over its own TLS connection did not reach the browser: %v", err)
	}
	rung.Reject(486, "Busy Here")
	if res, _ := in.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("PBX's call: %v", res)
	}

	// A TLS peer with a certificate from another CA is not the upstream,
	// whatever it claims.
	other := &tls.Config{RootCAs: straitCA, MinVersion: tls.VersionTLS12}
	otherCert, _ := tlsFiles(t, straitPKI.ServerCert, straitPKI.ServerKey, straitPKI.CA)
	other.Certificates = []tls.Certificate{otherCert}
	rogue, err := siptest.NewTLS(straitTLS(t, e), "pbx", server, other)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rogue.Close)
	before := metricValue(t, e.srv.Metrics.Registry, "strait_sip_dropped_total", map[string]string{"transport": "tls", "reason": metrics.DropUntrusted})
	if r, err := rogue.Invite(ctx(t), binding.Contact.User, offer); err != nil {
		t.Fatal(err)
	} else if res, _ := r.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 403 {
		t.Fatalf("rogue TLS peer's INVITE: %v", res)
	}
	if after := metricValue(t, e.srv.Metrics.Registry, "strait_sip_dropped_total", map[string]string{"transport": "tls", "reason": metrics.DropUntrusted}); after != before+1 {
		t.Errorf("untrusted count %v -> %v", before, after)
	}
	e.waitCalls(0)
	e.waitSessions(0)
}

// straitTLS is the address of Strait's SIP TLS listener.
func straitTLS(t *testing.T, e *env) string {
	t.Helper()
	p := e.srv.Stack.Port("TLS")
	if p == 0 {
		t.Fatal("no SIP TLS listener")
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// The server name is checked: a PBX whose certificate does not carry
// the upstream's host gets no request at all, and the browser's call is
// refused (503); so is one whose CA Strait was not given.
func TestUpstreamTLSRefusesTheWrongPeer(t *testing.T) {
	dir := t.TempDir()
	pbxPKI, err := tlsconfig.GeneratePKI(filepath.Join(dir, "pbx"), []string{"pbx.test"})
	if err != nil {
		t.Fatal(err)
	}
	pbxCert, _ := tlsFiles(t, pbxPKI.ServerCert, pbxPKI.ServerKey, pbxPKI.CA)
	server := &tls.Config{Certificates: []tls.Certificate{pbxCert}, MinVersion: tls.VersionTLS12}
	names := startTestDNS(t, map[string]string{"pbx.test": "127.0.0.1", "wrong.test": "127.0.0.1"})
	for _, tc := range []struct {
		name, host string
		ca         bool
	}{{"another name", "wrong.test", true}, {"no CA given", "pbx.test", false}} {
		t.Run(tc.name, func(t *testing.T) {
			pbx, err := siptest.NewTLS("", "pbx", server, &tls.Config{MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pbx.Close)
			pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
			_, p, _ := net.SplitHostPort(pbx.Addr)
			e := start(t, func(c *config.Config) {
				c.Upstream = []string{"sip:" + tc.host + ":" + p + ";transport=tls"}
				c.DNSServer = names.addr
				c.PBXAuthenticatesCalls = true
				if tc.ca {
					c.UpstreamCA = pbxPKI.CA
				}
			})
			b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			if res, err := b.Register(ctx(t), "wonderland", 600); err != nil || res.StatusCode != 503 {
				t.Errorf("REGISTER through a PBX with the wrong identity: %v %v", res, err)
			}
			call, err := b.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
			if err != nil {
				t.Fatal(err)
			}
			if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 503 {
				t.Errorf("call through a PBX with the wrong identity: %v", res)
			}
			select {
			case inc := <-pbx.Incoming:
				t.Fatalf("the PBX with the wrong identity got %s", inc.Invite.Method)
			default:
			}
			e.waitCalls(0)
		})
	}
}

// Several upstreams: a new call tries them by priority and fails over on
// 503 and on silence, keeping its Call-ID and tag; in-dialog requests go
// to the target that answered; a target that stops answering OPTIONS is
// tried last.
func TestUpstreamFailover(t *testing.T) {
	first, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Close)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	var heard atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := silent.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "INVITE ") {
				heard.Add(1)
			}
		}
	}()
	last, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(last.Close)
	e := start(t, func(c *config.Config) {
		c.Upstream = []string{"sip:" + first.Addr + ";priority=1", "sip:" + silent.LocalAddr().String() + ";priority=2",
			"sip:" + last.Addr + ";priority=3"}
		c.PBXAuthenticatesCalls = true
		c.OptionsInterval = 300 * time.Millisecond
	})
	b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	call := func() (*siptest.Dialog, *siptest.Dialog, time.Duration) {
		t.Helper()
		start := time.Now()
		mb := newBrowserMedia(t)
		out, err := b.Invite(ctx(t), "bob", []byte(mb.Offer))
		if err != nil {
			t.Fatal(err)
		}
		a, err := first.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatal("the first upstream got no INVITE")
		}
		a.Reject(503, "Service Unavailable")
		c, err := last.WaitCall(10 * time.Second)
		if err != nil {
			t.Fatal("no failover to the last upstream")
		}
		took := time.Since(start)
		ctag, _ := c.Invite.From().Params.Get("tag")
		atag, _ := a.Invite.From().Params.Get("tag")
		if c.CallID != a.CallID || ctag != atag {
			t.Errorf("failover changed the dialog: Call-ID %s -> %s", a.CallID, c.CallID)
		}
		plain := newPlain(t)
		go c.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		res, err := out.WaitAnswer(ctx(t), "")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("answer: %v %v", res, err)
		}
		out.Ack(ctx(t))
		return out, c, took
	}
	out, in, took := call()
	if heard.Load() == 0 {
		t.Error("the silent upstream never got the INVITE")
	}
	if took < noResponse {
		t.Errorf("failover past the silent upstream after %v, before its %v", took, noResponse)
	}
	if err := out.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the BYE did not go to the upstream that answered")
	}

	// The silent one fails its pings: the next call skips it.
	key := "udp/" + silent.LocalAddr().String()
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, e.srv.Metrics.Registry, "strait_upstream_target_up", map[string]string{"target": key}) != 0 ||
		!hasSeries(t, e, key) {
		if time.Now().After(deadline) {
			t.Fatal("the silent upstream is never marked down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := heard.Load()
	out, in, took = call()
	if took >= noResponse {
		t.Errorf("the second call waited %v for the silent upstream", took)
	}
	if heard.Load() != before {
		t.Error("the second call tried the upstream that is down before the one that is up")
	}
	out.Hangup(ctx(t))
	in.WaitEnded(5 * time.Second)
	e.waitCalls(0)
	e.waitSessions(0)
}

// noResponse is b2bua's wait for a first response before failing over.
const noResponse = 4 * time.Second

func hasSeries(t *testing.T, e *env, target string) bool {
	mfs, err := e.srv.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strait_upstream_target_up" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == target {
					return true
				}
			}
		}
	}
	return false
}

// Issue 8 item 8: the upstream is its address, port and transport. A
// process on the PBX's host at another port is refused (403, counted),
// whatever it sends, and asks no DNS question (the upstream's name was
// resolved in the background: issue 10 item 7); a --sip-trust range lets
// it in.
func TestUpstreamIdentity(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		name := "untrusted"
		if trusted {
			name = "trusted range"
		}
		t.Run(name, func(t *testing.T) {
			pbx, err := siptest.NewUDP("", "pbx")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pbx.Close)
			reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
			names := startTestDNS(t, map[string]string{"pbx.test": "127.0.0.1"})
			_, p, _ := net.SplitHostPort(pbx.Addr)
			e := start(t, func(c *config.Config) {
				c.Upstream = []string{"sip:pbx.test:" + p}
				c.DNSServer = names.addr
				if trusted {
					c.SIPTrust = []string{"127.0.0.0/8"}
				}
			})
			pbx.SetPeer(e.srv.SIPAddr())
			b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			tr := &trunk{env: e, pbx: pbx, reg: reg, browser: b}
			binding := tr.register(t)

			rogue, err := siptest.NewUDP(e.srv.SIPAddr(), "pbx")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(rogue.Close)
			untrusted := func() float64 {
				return metricValue(t, e.srv.Metrics.Registry, "strait_sip_dropped_total", map[string]string{"transport": "udp", "reason": metrics.DropUntrusted})
			}
			queries, dropped := names.queries.Load(), untrusted()
			plain := newPlain(t)
			offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
			const n = 20
			for range n {
				call, err := rogue.Invite(ctx(t), binding.Contact.User, offer)
				if err != nil {
					t.Fatal(err)
				}
				if trusted {
					inc, err := b.WaitCall(5 * time.Second)
					if err != nil {
						t.Fatal("a trusted range's call did not reach the browser")
					}
					inc.Reject(486, "Busy Here")
					if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
						t.Fatalf("a trusted range's call: %v", res)
					}
					break
				}
				res, _ := call.WaitAnswer(ctx(t), "")
				if res == nil || res.StatusCode != 403 {
					t.Fatalf("INVITE from the PBX's host at another port: %v", res)
				}
			}
			if !trusted {
				for _, m := range []sip.RequestMethod{sip.OPTIONS, sip.MESSAGE} {
					if res, err := rogue.Send(ctx(t), m, binding.Contact.User, nil, ""); err != nil || res.StatusCode != 403 {
						t.Errorf("%s from the PBX's host at another port: %v %v", m, res, err)
					}
				}
				if res, err := rogue.Register(ctx(t), "wonderland", 600); err != nil || res.StatusCode != 403 {
					t.Errorf("REGISTER from the PBX's host at another port: %v %v", res, err)
				}
				if got := untrusted() - dropped; got != n+3 {
					t.Errorf("%v refusals counted, want %d", got, n+3)
				}
				select {
				case inc := <-b.Incoming:
					t.Fatalf("the browser got a call from an untrusted source: %s", inc.Invite.From().Value())
				default:
				}
			}
			if q := names.queries.Load() - queries; q != 0 {
				t.Errorf("requests from the SIP side made %d DNS queries", q)
			}
			e.waitCalls(0)
		})
	}
}

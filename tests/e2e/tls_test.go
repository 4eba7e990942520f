package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9 item 2, end to end: SIP over TLS toward the upstream with a
// private CA and mutual TLS, the upstream named by DNS (RFC 3263: NAPTR,
// SRV, A from dnsmasq). Kamailio's tls module is the upstream's edge
// (it requires Strait's client certificate; strait checks that its
// certificate chains to --upstream-ca and names pbx.test) in front of
// sipp PBXs. A browser (JsSIP over WSS) registers and calls out; then the
// PBX calls the browser over a TLS connection Kamailio opens to strait's
// --sip-tls listener, which strait recognises by Kamailio's certificate.
func TestTrunkTLS(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp,
		harness.NeedKamailio, harness.NeedDnsmasq)
	// Two private CAs: the PBX's (its edge's certificate for pbx.test,
	// and the client certificate strait shows it), and strait's own.
	pbxCert, straitClient := e.PKI("pki-pbx", "pbx.test")
	straitCert, _ := e.PKI("pki-strait", "127.0.0.1")
	registrar := e.StartSipp(harness.SippConfig{Name: "pbx-registrar", Scenario: "uas_register.xml"})
	pbx := e.StartSipp(harness.SippConfig{Name: "pbx", Scenario: "uas_trunk.xml", RTPEcho: true})
	straitSIP := harness.FreeAddr(t)
	straitTLS := harness.FreeAddr(t)
	// Kamailio checks strait's client certificate against the PBX's CA,
	// and strait's server certificate against strait's CA: one bundle.
	bundle := e.Artifact("kamailio-ca.pem")
	e.WriteArtifact("kamailio-ca.pem", []byte(readFile(t, pbxCert.CA)+readFile(t, straitCert.CA)))
	k := e.StartKamailio(harness.KamailioConfig{Strait: straitSIP, PBX: pbx.Addr(), Registrar: registrar.Addr(), RecordRoute: true,
		TLS: &harness.KamailioTLS{Cert: pbxCert.Cert, Key: pbxCert.Key, CA: bundle, RequireClientCert: true, StraitTLS: straitTLS}})
	dns := e.StartDNS(harness.DNSConfig{
		Hosts: []string{"pbx.test,127.0.0.1", "edge.pbx.test,127.0.0.1"},
		SRV:   []string{"_sips._tcp.pbx.test,edge.pbx.test," + strconv.Itoa(k.StraitTLSSide) + ",0,10"},
		NAPTR: []string{"pbx.test,10,10,s,SIPS+D2T,,_sips._tcp.pbx.test"},
	})
	s := e.StartStrait(harness.StraitConfig{SIPAddr: straitSIP, Upstream: "sip:pbx.test", Users: []string{"alice:secret"},
		TLS: &straitCert, Args: []string{"--sip-tls", straitTLS, "--dns-server", dns.Addr,
			"--upstream-ca", pbxCert.CA, "--upstream-cert", straitClient.Cert, "--upstream-key", straitClient.Key}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser("--ignore-certificate-errors")
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	base := baseline(e, s)

	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo over a TLS trunk")
	e.Step("the INVITE crossed the TLS trunk to pbx.test", 5*time.Second, func(context.Context) error {
		log := k.Log()
		if !strings.Contains(log, "request INVITE sip:1000@pbx.test;transport=tls from tls:") {
			return fmt.Errorf("Kamailio saw no INVITE for pbx.test over TLS:\n%s", lastLinesOf(log, 20))
		}
		if inv := invites(pbx); len(inv) == 0 || !strings.Contains(inv[0], "sip:1000@pbx.test") {
			return fmt.Errorf("the PBX's INVITE: %v", inv)
		}
		return nil
	})
	pbxHangsUp(e, alice, pbx)

	caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_trunk.xml", Remote: k.PBXAddr(), Service: "alice"})
	e.Step("the PBX's call reaches the browser over strait's TLS listener", 15*time.Second, func(ctx context.Context) error {
		return alice.WaitFor(ctx, `sip.state.incoming > 0 && sip.state.call === "progress"`)
	})
	e.Step("the browser answers", 10*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.answer()`, nil); err != nil {
			return err
		}
		return waitCall(ctx, alice, "confirmed")
	})
	audioArrives(e, alice, "the PBX's tone over a TLS trunk")
	hangUp(e, alice)
	e.Step("the PBX got the BYE and its call succeeded", 20*time.Second, caller.Wait)
	idle(e, s, base)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

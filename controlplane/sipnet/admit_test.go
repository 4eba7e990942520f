package sipnet

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/metrics"
)

func admittingStack(t *testing.T, m *metrics.Metrics, adm Admission, h func(*sip.Request, sip.ServerTransaction)) *Stack {
	t.Helper()
	st, err := New(Config{Host: "127.0.0.1", Addr: "127.0.0.1:0", Metrics: m, Log: slog.New(slog.DiscardHandler), Admission: adm})
	if err != nil {
		t.Fatal(err)
	}
	st.Server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		st.Track(tx)
		h(req, tx)
	})
	if err := st.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func optionsFrom(i int, via string) string {
	return fmt.Sprintf("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-adm-%d\r\n"+
		"From: <sip:a@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: adm-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"+
		"Content-Length: 0\r\n\r\n", via, i, i)
}

// readAll collects the responses a socket gets within d.
func readAll(c net.PacketConn, d time.Duration) []string {
	var out []string
	buf := make([]byte, 8192)
	c.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

// A source beyond its bucket is dropped, counted; another source is not
// affected; the trusted one is never limited.
func TestReadFilterRate(t *testing.T) {
	m := metrics.New()
	trusted := netip.MustParseAddr("127.0.0.3")
	st := admittingStack(t, m, Admission{Buckets: admission.NewBuckets(1, 5, 100),
		Trusted: func(_ string, a netip.AddrPort) bool { return a.Addr() == trusted }},
		func(req *sip.Request, tx sip.ServerTransaction) {
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	dst, _ := net.ResolveUDPAddr("udp4", st.UDPAddr())
	for _, c := range []struct {
		src  string
		want int
	}{{"127.0.0.2", 5}, {"127.0.0.4", 5}, {"127.0.0.3", 20}} {
		u, err := net.ListenPacket("udp4", c.src+":0")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			u.WriteTo([]byte(optionsFrom(i, u.LocalAddr().String())), dst)
		}
		if got := len(readAll(u, 500*time.Millisecond)); got < c.want-1 || got > c.want+1 {
			t.Errorf("%s sent 20: %d answered, want about %d", c.src, got, c.want)
		}
		u.Close()
	}
	if n := dropped(t, m, "udp", metrics.DropRate); n < 28 {
		t.Fatalf("%g messages dropped for their rate, want about 30", n)
	}
}

// Beyond the bound on live server transactions a request gets 503 with
// Retry-After at once, without a transaction, and RFC 7339 feedback when
// its Via has oc.
func TestReadFilterOverload(t *testing.T) {
	m := metrics.New()
	release := make(chan struct{})
	st := admittingStack(t, m, Admission{MaxServerTransactions: 2, RetryAfter: 7 * time.Second},
		func(req *sip.Request, tx sip.ServerTransaction) {
			<-release // hold the transaction
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	defer close(release)
	u, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	dst, _ := net.ResolveUDPAddr("udp4", st.UDPAddr())
	for i := range 2 {
		u.WriteTo([]byte(optionsFrom(i, u.LocalAddr().String())), dst)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.ServerTransactions() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d server transactions alive, want 2", st.ServerTransactions())
		}
		time.Sleep(5 * time.Millisecond)
	}
	u.WriteTo([]byte(optionsFrom(9, u.LocalAddr().String()+";oc")), dst)
	res := readAll(u, time.Second)
	if len(res) != 1 || !strings.HasPrefix(res[0], "SIP/2.0 503 ") || !strings.Contains(res[0], "Retry-After: 7") ||
		!strings.Contains(res[0], "oc=100") || !strings.Contains(res[0], "oc-validity=7000") {
		t.Fatalf("over the bound: %q", res)
	}
	if n := dropped(t, m, "udp", metrics.DropOverload); n != 1 {
		t.Fatalf("%g overload refusals counted, want 1", n)
	}
	if st.ServerTransactions() != 2 {
		t.Fatalf("the refused request made a transaction: %d alive", st.ServerTransactions())
	}
}

func TestInDialog(t *testing.T) {
	for msg, want := range map[string]bool{
		"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:b@c>;tag=abc\r\n\r\n":     true,
		"BYE sip:a@b SIP/2.0\r\nt: <sip:b@c>;TAG=abc\r\n\r\n":                            true,
		"INVITE sip:a@b SIP/2.0\r\nTo: <sip:b@c>\r\nFrom: <sip:a@b>;tag=1\r\n\r\n":       false,
		"INVITE sip:a@b SIP/2.0\r\nTo: <sip:b@c>\r\n\r\nv=0\r\nTo: <sip:x>;tag=body\r\n": false,
		"garbage": false,
	} {
		if got := inDialog([]byte(msg)); got != want {
			t.Errorf("inDialog(%q) = %v", msg, got)
		}
	}
}

package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"sip:10.0.0.5", Spec{Host: "10.0.0.5", Priority: 1, Weight: 1}},
		{"sip:10.0.0.5:5070;transport=tcp", Spec{Host: "10.0.0.5", Port: 5070, Transport: TCP, Priority: 1, Weight: 1}},
		{"sip:pbx.example.com;transport=TLS;priority=2;weight=30", Spec{Host: "pbx.example.com", Transport: TLS, Priority: 2, Weight: 30}},
		{"sip:[2001:db8::1]:5080", Spec{Host: "2001:db8::1", Port: 5080, Priority: 1, Weight: 1}},
		{"SIP:trunk.example.net;weight=0", Spec{Host: "trunk.example.net", Priority: 1, Weight: 0}},
	} {
		got, err := ParseSpec(tc.in)
		tc.want.URI = tc.in
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "pbx", "sips:pbx", "sip:alice@pbx", "sip:pbx;transport=sctp", "sip:pbx;priority=x",
		"sip:pbx;weight=-1", "sip:pbx;weight=70000", "sip:bad_host!", "sip:" + strings.Repeat("a", 64) + ".com"} {
		if got, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) = %+v, want an error", bad, got)
		}
	}
}

// dnsServer is a real DNS server (miekg/dns) on loopback answering from
// records; it counts the queries it answers.
type dnsServer struct {
	addr    string
	queries atomic.Int64
}

func startDNS(t *testing.T, records ...string) *dnsServer {
	t.Helper()
	zone := map[string][]dns.RR{}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		zone[k] = append(zone[k], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		s.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		m.Answer = zone[name+"/"+dns.TypeToString[q.Question[0].Qtype]]
		if len(m.Answer) == 0 {
			known := false
			for k := range zone {
				known = known || strings.HasPrefix(k, name+"/")
			}
			if !known {
				m.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func targets(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key())
	}
	return out
}

// RFC 3263 section 4: NAPTR picks the transports in order, SRV the ports,
// A/AAAA the addresses; without NAPTR the first transport with SRV wins;
// without SRV, the name's addresses at the default port; a port in the
// URI skips NAPTR and SRV.
func TestResolveRFC3263(t *testing.T) {
	d := startDNS(t,
		`naptr.test. 60 IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.naptr.test.`,
		`naptr.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.naptr.test.`,
		`naptr.test. 60 IN NAPTR 5 10 "s" "SIP+D2S" "" _sip._sctp.naptr.test.`,
		`_sips._tcp.naptr.test. 60 IN SRV 10 10 5061 a.naptr.test.`,
		`_sip._udp.naptr.test. 60 IN SRV 10 10 5080 b.naptr.test.`,
		`a.naptr.test. 60 IN A 192.0.2.1`,
		`b.naptr.test. 60 IN A 192.0.2.2`,
		`b.naptr.test. 60 IN AAAA 2001:db8::2`,
		`_sip._tcp.srv.test. 60 IN SRV 20 10 5090 c.srv.test.`,
		`_sip._tcp.srv.test. 60 IN SRV 10 10 5091 c.srv.test.`,
		`_sip._udp.srv.test. 60 IN SRV 10 10 5092 c.srv.test.`,
		`c.srv.test. 60 IN A 192.0.2.3`,
		`plain.test. 60 IN A 192.0.2.4`,
	)
	r := NewResolver(d.addr)
	for _, tc := range []struct {
		uri  string
		want []string
	}{
		{"sip:naptr.test", []string{"tls/192.0.2.1:5061", "udp/192.0.2.2:5080|udp/[2001:db8::2]:5080"}},
		{"sip:srv.test", []string{"tcp/192.0.2.3:5091", "tcp/192.0.2.3:5090"}},
		{"sip:srv.test;transport=udp", []string{"udp/192.0.2.3:5092"}},
		{"sip:plain.test", []string{"udp/192.0.2.4:5060"}},
		{"sip:plain.test;transport=tls", []string{"tls/192.0.2.4:5061"}},
		{"sip:srv.test:5070;transport=tcp", nil}, // a port: A only, and srv.test has none
		{"sip:c.srv.test:5070;transport=tcp", []string{"tcp/192.0.2.3:5070"}},
		{"sip:192.0.2.9", []string{"udp/192.0.2.9:5060"}},
	} {
		sp, err := ParseSpec(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := r.Resolve(context.Background(), &sp)
		got := targets(ts)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s resolved to %v, want an error", tc.uri, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.uri, err)
			continue
		}
		// Within one SRV priority the order is the set's to shuffle:
		// compare as ordered by rank.
		set := NewSet(Config{Specs: []Spec{sp}, Resolver: r, Log: quiet})
		if err := set.Resolve(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := targets(set.Order()); !sameOrder(got, tc.want) {
			t.Errorf("%s: order %v, want %v", tc.uri, got, tc.want)
		}
	}
}

// Match is by address, port and transport; never by a DNS query (the set
// resolves in the background), and a failed lookup keeps the last
// addresses.
func TestMatchWithoutDNS(t *testing.T) {
	d := startDNS(t, `pbx.test. 60 IN A 192.0.2.7`)
	set := NewSet(Config{Specs: []Spec{mustSpec(t, "sip:pbx.test:5060"), mustSpec(t, "sip:192.0.2.8:5070;transport=tcp")},
		Resolver: NewResolver(d.addr), Log: quiet})
	if _, ok := set.Match(UDP, netip.MustParseAddrPort("192.0.2.7:5060")); ok {
		t.Fatal("matched a name before it was resolved")
	}
	if err := set.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := d.queries.Load()
	for _, tc := range []struct {
		transport, src string
		want           bool
	}{
		{UDP, "192.0.2.7:5060", true},
		{UDP, "192.0.2.7:5062", false}, // another port on the PBX's host
		{TCP, "192.0.2.7:5060", false}, // another transport
		{TCP, "192.0.2.8:40123", true}, // the PBX opened the connection
		{UDP, "192.0.2.8:5070", false},
		{UDP, "198.51.100.1:5060", false},
		{UDP, "[::ffff:192.0.2.7]:5060", true},
	} {
		if _, ok := set.Match(tc.transport, netip.MustParseAddrPort(tc.src)); ok != tc.want {
			t.Errorf("Match(%s, %s) = %v, want %v", tc.transport, tc.src, ok, tc.want)
		}
	}
	if q := d.queries.Load(); q != n {
		t.Errorf("Match made %d DNS queries", q-n)
	}
	// The DNS server goes away: the last addresses stay.
	set.res = NewResolver("127.0.0.1:1")
	if err := set.Resolve(context.Background()); err == nil {
		t.Fatal("resolution against a dead server succeeded")
	}
	if _, ok := set.Match(UDP, netip.MustParseAddrPort("192.0.2.7:5060")); !ok {
		t.Error("a failed lookup dropped the upstream's last addresses")
	}
}

var quiet = slog.New(slog.DiscardHandler)

// sameOrder compares an order with a want list whose entries may be
// "a|b": a group of equal rank and weight, in any order.
func sameOrder(got, want []string) bool {
	i := 0
	for _, w := range want {
		group := strings.Split(w, "|")
		if i+len(group) > len(got) {
			return false
		}
		seen := map[string]bool{}
		for _, g := range got[i : i+len(group)] {
			seen[g] = true
		}
		for _, g := range group {
			if !seen[g] {
				return false
			}
		}
		i += len(group)
	}
	return i == len(got)
}

func mustSpec(t *testing.T, s string) Spec {
	t.Helper()
	sp, err := ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// New calls try the lowest priority first, share equal priorities by
// weight, and put targets that failed their ping last.
func TestOrder(t *testing.T) {
	set := NewSet(Config{Specs: []Spec{mustSpec(t, "sip:192.0.2.1;priority=2"), mustSpec(t, "sip:192.0.2.2;priority=1;weight=3"),
		mustSpec(t, "sip:192.0.2.3;priority=1;weight=1"), mustSpec(t, "sip:192.0.2.4;priority=1;weight=0")}, Log: quiet})
	first := map[string]int{}
	const n = 4000
	for range n {
		o := targets(set.Order())
		if len(o) != 4 || o[3] != "udp/192.0.2.1:5060" || o[2] != "udp/192.0.2.4:5060" {
			t.Fatalf("order %v", o)
		}
		first[o[0]]++
	}
	// Weights 3:1: about 3000 and 1000.
	if a, b := first["udp/192.0.2.2:5060"], first["udp/192.0.2.3:5060"]; a < 2700 || a > 3300 || a+b != n {
		t.Errorf("first picks %v, want about 3:1", first)
	}
	all := set.All()
	if !set.SetUp(all[1], false) || set.SetUp(all[1], false) {
		t.Error("SetUp does not report changes")
	}
	for range 100 {
		o := targets(set.Order())
		if o[3] != all[1].Key() {
			t.Fatalf("a target that is down is not last: %v", o)
		}
	}
	for _, tg := range all {
		set.SetUp(tg, false)
	}
	if set.Up() {
		t.Error("Up with every target down")
	}
	if len(set.Order()) != 4 {
		t.Error("targets that are all down are not tried at all")
	}
}

func TestResolveTimeout(t *testing.T) {
	// A server that never answers: resolution gives up within the bound.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := NewResolver(pc.LocalAddr().String())
	sp := mustSpec(t, "sip:slow.test")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := r.Resolve(ctx, &sp); err == nil {
		t.Fatal("resolved against a silent server")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("resolution took %v despite its context", d)
	}
}

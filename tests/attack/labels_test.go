package attack

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// straitSeries counts the series of every strait_* metric.
func straitSeries(tg *target) int {
	n := 0
	for s := range tg.scrape().Values {
		if strings.HasPrefix(s, "strait_") {
			n++
		}
	}
	return n
}

// Issue 8 item 6. Metric labels took attacker input: 1 000 made-up SIP
// methods made 2 000 new series (requests in, 405 responses out), which
// is memory in strait and in every Prometheus that scrapes it, without
// bound. Unknown methods now count as "other"; no label takes a value
// the network chose.
func TestMetricLabelsBounded(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	before := straitSeries(tg)
	const methods = 1000
	madeUp := make(map[string]bool, methods)
	names := make([]string, 0, methods)
	for len(names) < methods {
		m := "X" + strings.ToUpper(token(6))
		if !madeUp[m] {
			madeUp[m] = true
			names = append(names, m)
		}
	}
	a := startAttack(t, 10*time.Second, func(ctx context.Context, a *attack) error {
		// 10 addresses: 100 messages each stay within a source's burst
		// (200), so that every one reaches the counters.
		conns := make([]*net.UDPConn, 10)
		for i := range conns {
			c, err := udpFrom(attackerIP(i))
			if err != nil {
				return err
			}
			defer c.Close()
			conns[i] = c
		}
		dst, err := net.ResolveUDPAddr("udp4", tg.SIPAddr)
		if err != nil {
			return err
		}
		buf := make([]byte, 8192)
		for i := 0; i < methods && ctx.Err() == nil; i++ {
			c := conns[i%len(conns)]
			port := c.LocalAddr().(*net.UDPAddr).Port
			src := c.LocalAddr().(*net.UDPAddr).IP.String()
			m := options("UDP", fmt.Sprintf("%s:%d", src, port), "127.0.0.1")
			m.Method = names[i]
			if _, err := c.WriteTo([]byte(m.String()), dst); err != nil {
				return err
			}
			a.Sent.Add(1)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err := c.Read(buf); err == nil && statusOf(string(buf[:n])) >= 400 {
				a.Refused.Add(1)
			}
		}
		return nil
	})
	tg.callDuring(a)
	a.wait(t)
	after := straitSeries(tg)
	// No label value anywhere is one of the made-up methods.
	m := tg.scrape()
	for s := range m.Values {
		for _, kv := range labelPair.FindAllStringSubmatch(s, -1) {
			if madeUp[strings.ToUpper(kv[2])] {
				t.Fatalf("a label took a made-up method: %s", s)
			}
		}
	}
	// The legitimate call adds its own series (INVITE, ACK, BYE in and
	// out, their responses, call states, setup-time histogram buckets):
	// a bounded few dozen, never one per made-up method.
	if after-before > methods/10 {
		t.Fatalf("%d new strait_* series after %d made-up methods:\n%s\n%s", after-before, a.Sent.Load(),
			series(m, "strait_sip_requests_total"), series(m, "strait_sip_responses_total"))
	}
	tg.waitCounted(float64(a.Sent.Load()), "strait_sip_requests_total", "method=other", "direction=in")
	t.Logf("%d made-up methods (%d answered with an error): strait_* series %d -> %d", a.Sent.Load(), a.Refused.Load(), before, after)
}

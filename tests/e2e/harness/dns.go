package harness

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// DNSConfig is what a test DNS server (dnsmasq) answers, in dnsmasq's own
// option syntax, and nothing else: it forwards nowhere and reads no hosts
// file.
type DNSConfig struct {
	// Hosts are A/AAAA records: "name,address" (--host-record).
	Hosts []string
	// SRV are "_service._proto.name,target,port,priority,weight" (--srv-host).
	SRV []string
	// NAPTR are "name,order,preference,flags,service,regexp,replacement"
	// (--naptr-record).
	NAPTR []string
}

// DNS is a running dnsmasq.
type DNS struct {
	*Process
	// Addr is where it answers, 127.0.0.1:PORT over UDP and TCP.
	Addr string
}

// DnsmasqVersion returns dnsmasq's version line.
func DnsmasqVersion() string {
	out, err := exec.Command("dnsmasq", "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// StartDNS starts dnsmasq (stopped at the end of the test) answering only
// cfg's records, its queries logged to the artifact dns.log.
func (e *Env) StartDNS(cfg DNSConfig) *DNS {
	e.t.Helper()
	d := &DNS{Addr: FreeAddr(e.t)}
	_, port, _ := net.SplitHostPort(d.Addr)
	argv := []string{"dnsmasq", "--no-daemon", "--port=" + port, "--listen-address=" + LoopbackIP, "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--no-poll", "--log-queries", "--log-facility=-", "--user=root", "--pid-file="}
	for _, h := range cfg.Hosts {
		argv = append(argv, "--host-record="+h)
	}
	for _, s := range cfg.SRV {
		argv = append(argv, "--srv-host="+s)
	}
	for _, n := range cfg.NAPTR {
		argv = append(argv, "--naptr-record="+n)
	}
	p, err := e.startProcess("dns", "", nil, 2*time.Second, argv...)
	if err != nil {
		e.t.Fatal(err)
	}
	d.Process = p
	e.Step("dnsmasq listening", 10*time.Second, func(ctx context.Context) error {
		for {
			if p.Exited() {
				return fmt.Errorf("dnsmasq exited: %v\n%s", p.err, lastLines(p.Log(), 20))
			}
			if c, err := net.DialTimeout("tcp", d.Addr, time.Second); err == nil {
				c.Close()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("dnsmasq not listening on %s: %w", d.Addr, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return d
}

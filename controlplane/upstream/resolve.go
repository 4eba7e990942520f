package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxTargets bounds how many addresses one upstream resolves to: a DNS
// answer is not allowed to grow Strait's tables (and metric labels)
// without end.
const maxTargets = 16

// lookupTimeout bounds one DNS query.
const lookupTimeout = 3 * time.Second

// Resolver looks upstream names up as RFC 3263 section 4 says: NAPTR to
// choose the transport when the URI names none, SRV for the port and
// weights when it names no port, A and AAAA for addresses. NAPTR needs
// its own DNS client (Go's resolver has no NAPTR); SRV and addresses go
// through Go's resolver, which also reads /etc/hosts.
type Resolver struct {
	// Server is the DNS server (host:port) every query goes to; empty
	// uses the system's (/etc/resolv.conf, and /etc/hosts for
	// addresses).
	Server string

	net *net.Resolver
	dns *dns.Client
}

// NewResolver returns a resolver asking server, or the system's when
// server is empty.
func NewResolver(server string) *Resolver {
	r := &Resolver{Server: server, net: net.DefaultResolver, dns: &dns.Client{Timeout: lookupTimeout}}
	if server != "" {
		d := net.Dialer{Timeout: lookupTimeout}
		r.net = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		}}
	}
	return r
}

// errNoRecords is a name that exists without the records asked for, or
// does not exist.
var errNoRecords = errors.New("no such records")

// Resolve returns the targets of one upstream, in RFC 3263 order (rank).
func (r *Resolver) Resolve(ctx context.Context, sp *Spec) ([]Target, error) {
	if ip, ok := sp.IP(); ok {
		t := sp.Transport
		if t == "" {
			t = UDP
		}
		port := sp.Port
		if port == 0 {
			port = DefaultPort(t)
		}
		return []Target{{Spec: sp, Addr: netip.AddrPortFrom(ip, uint16(port)), Transport: t}}, nil
	}
	if sp.Port != 0 {
		// RFC 3263 section 4.2: a port means no SRV, addresses only.
		t := sp.Transport
		if t == "" {
			t = UDP
		}
		return r.addresses(ctx, sp, sp.Host, sp.Port, t, [2]int{}, 0)
	}
	var services []service
	firstOnly := false // the first transport with SRV records wins
	if sp.Transport != "" {
		services = []service{{transport: sp.Transport, srv: srvName(sp.Transport, sp.Host)}}
	} else {
		var err error
		services, err = r.naptr(ctx, sp.Host)
		if err != nil && !errors.Is(err, errNoRecords) {
			return nil, err
		}
		if len(services) == 0 {
			// RFC 3263 section 4.1: no NAPTR, so SRV per transport;
			// Strait prefers TLS, then TCP, then UDP.
			firstOnly = true
			for _, t := range []string{TLS, TCP, UDP} {
				services = append(services, service{transport: t, srv: srvName(t, sp.Host)})
			}
		}
	}
	var out []Target
	var lastErr error
	for i, svc := range services {
		ts, err := r.srv(ctx, sp, svc, i)
		if err != nil {
			if !errors.Is(err, errNoRecords) {
				lastErr = err
			}
			continue
		}
		out = append(out, ts...)
		if firstOnly {
			break
		}
	}
	if len(out) > 0 {
		return capTargets(out), nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	// RFC 3263 sections 4.1 and 4.2: no SRV either, so the name's
	// addresses at the transport's default port (UDP when none).
	t := sp.Transport
	if t == "" {
		t = UDP
	}
	return r.addresses(ctx, sp, sp.Host, DefaultPort(t), t, [2]int{}, 0)
}

// service is one transport to try and the SRV name that gives its
// servers.
type service struct {
	transport, srv string
}

func srvName(transport, host string) string {
	switch transport {
	case TLS:
		return "_sips._tcp." + host
	case TCP:
		return "_sip._tcp." + host
	}
	return "_sip._udp." + host
}

// naptr returns the SIP services a name's NAPTR records offer, in order
// and preference, keeping the transports Strait speaks (RFC 3263 section
// 4.1, RFC 3403).
func (r *Resolver) naptr(ctx context.Context, host string) ([]service, error) {
	rrs, err := r.query(ctx, host, dns.TypeNAPTR)
	if err != nil {
		return nil, err
	}
	var recs []*dns.NAPTR
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NAPTR); ok && strings.EqualFold(n.Flags, "s") && n.Replacement != "" && n.Replacement != "." {
			recs = append(recs, n)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Order != recs[j].Order {
			return recs[i].Order < recs[j].Order
		}
		return recs[i].Preference < recs[j].Preference
	})
	var out []service
	for _, n := range recs {
		t := ""
		switch strings.ToUpper(n.Service) {
		case "SIP+D2U":
			t = UDP
		case "SIP+D2T":
			t = TCP
		case "SIPS+D2T":
			t = TLS
		default:
			continue
		}
		out = append(out, service{transport: t, srv: strings.TrimSuffix(n.Replacement, ".")})
	}
	return out, nil
}

// query asks the configured (or first system) DNS server for one record
// type.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	server := r.Server
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("no DNS server for %s: %v", dns.TypeToString[qtype], err)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	in, _, err := r.dns.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], name, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, errNoRecords
	default:
		return nil, fmt.Errorf("%s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode])
	}
	if len(in.Answer) == 0 {
		return nil, errNoRecords
	}
	return in.Answer, nil
}

// srv resolves one service's SRV records and their addresses.
func (r *Resolver) srv(ctx context.Context, sp *Spec, svc service, order int) ([]Target, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	_, recs, err := r.net.LookupSRV(ctx, "", "", svc.srv)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, errNoRecords
		}
		return nil, err
	}
	var out []Target
	for _, s := range recs {
		if s.Target == "." || s.Port == 0 {
			continue // RFC 2782: "." means the service is not offered
		}
		ts, err := r.addresses(ctx, sp, strings.TrimSuffix(s.Target, "."), int(s.Port), svc.transport,
			[2]int{order, int(s.Priority)}, int(s.Weight))
		for i := range ts {
			ts[i].srv = true
		}
		if err == nil {
			out = append(out, ts...)
		}
	}
	if len(out) == 0 {
		return nil, errNoRecords
	}
	return out, nil
}

// addresses resolves a host name to targets at port.
func (r *Resolver) addresses(ctx context.Context, sp *Spec, host string, port int, transport string, rank [2]int, weight int) ([]Target, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ips, err := r.net.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, fmt.Errorf("%s: %w", host, errNoRecords)
		}
		return nil, err
	}
	out := make([]Target, 0, len(ips))
	for _, ip := range ips {
		out = append(out, Target{Spec: sp, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), Transport: transport,
			rank: rank, weight: weight})
	}
	return capTargets(out), nil
}

func capTargets(ts []Target) []Target {
	if len(ts) > maxTargets {
		ts = ts[:maxTargets]
	}
	return ts
}

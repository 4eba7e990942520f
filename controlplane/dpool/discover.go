package dpool

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// DefaultDiscoveryInterval is how often a discovered name is resolved
// again: a new node takes calls within it, a node gone from the list stops
// getting new ones within it (a node that dies is caught sooner, by its
// event stream and heartbeats).
const DefaultDiscoveryInterval = 5 * time.Second

// maxDiscovered bounds the nodes one name may bring: a DNS answer must not
// grow the pool (goroutines, connections, metric labels) without end.
const maxDiscovered = 64

// Resolver looks a name up (net.Resolver does).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Discovery watches a DNS name whose addresses are dataplane nodes (every
// A and AAAA record, at Port): in Kubernetes, a headless Service over the
// nodes' DaemonSet, whose addresses are the ready nodes' host addresses.
type Discovery struct {
	// Name is resolved every Interval (0: DefaultDiscoveryInterval).
	Name     string
	Port     uint16
	Interval time.Duration
	// Resolver looks Name up.
	Resolver Resolver
	// Dial makes the Node for an address ("IP:PORT", also its Name);
	// it must not block on the network (grpc.NewClient does not).
	Dial func(addr netip.AddrPort) (*Node, error)
}

// Discover keeps the pool's membership in step with d until the pool
// closes: addresses that appear are added (a node back from a restart is
// used again), addresses that go are retired (no new sessions; their
// calls run on). A failed lookup changes nothing: nodes are not dropped
// because DNS hiccupped. It returns after the first lookup.
func (p *Pool) Discover(d Discovery) {
	if d.Interval <= 0 {
		d.Interval = DefaultDiscoveryInterval
	}
	known := map[netip.AddrPort]bool{}
	p.resolve(d, known)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(d.Interval)
		defer t.Stop()
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-t.C:
				p.resolve(d, known)
			}
		}
	}()
}

// resolve looks d.Name up once and adds and retires members to match.
// known holds the addresses d added (owned by Discover's goroutine).
func (p *Pool) resolve(d Discovery, known map[netip.AddrPort]bool) {
	ctx, cancel := context.WithTimeout(p.ctx, d.Interval)
	ips, err := d.Resolver.LookupNetIP(ctx, "ip", d.Name)
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("dataplane discovery: lookup failed; keeping the nodes known", "name", d.Name, "err", err)
		}
		return
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	if len(ips) > maxDiscovered {
		p.log.Warn("dataplane discovery: too many addresses; using the first", "name", d.Name, "addresses", len(ips), "used", maxDiscovered)
		ips = ips[:maxDiscovered]
	}
	seen := map[netip.AddrPort]bool{}
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), d.Port)
		seen[ap] = true
		if known[ap] {
			continue
		}
		n, err := d.Dial(ap)
		if err != nil {
			p.log.Warn("dataplane discovery: cannot reach node", "node", ap.String(), "err", err)
			continue
		}
		known[ap] = true
		p.Add(n)
	}
	for ap := range known {
		if !seen[ap] {
			delete(known, ap)
			p.Retire(ap.String())
		}
	}
}

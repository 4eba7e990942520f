// Package admission bounds what the network may ask of Strait before any
// SIP or HTTP processing happens: per-source token buckets (the role of
// Kamailio's pike module), and caps on open connections per source and in
// total, with headroom kept for health checks.
//
// A source is an IPv4 address or an IPv6 /64 (one subscriber holds a
// whole /64, so per-address limits on IPv6 would limit nothing). Every
// table is bounded; what is refused is counted by the caller's metrics,
// never logged one line per refusal.
package admission

import "net/netip"

// Key returns the source a remote address is counted under: the address
// itself for IPv4 (and IPv4-mapped IPv6), its /64 for IPv6.
func Key(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// KeyOf parses "ip:port" (or a bare IP) and returns its Key; ok is false
// when it does not parse.
func KeyOf(addr string) (key netip.Prefix, ok bool) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return Key(ap.Addr()), true
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		return Key(a), true
	}
	return netip.Prefix{}, false
}

package apps

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrInternalAddress is why a webhook was not sent: its host resolved to
// an address an app on the public internet does not have, and the
// operator did not allow private destinations.
var ErrInternalAddress = errors.New("apps: webhook destination is an internal address (allow it with --app-allow-private)")

// internalRanges are special-purpose ranges (RFC 6890 and its updates)
// besides what netip's predicates cover.
var internalRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT), RFC 6598
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking, RFC 2544
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 (RFC 6052): may embed a private IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64, RFC 8215
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("100::/64"),        // discard-only, RFC 6666
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
}

// Internal reports whether a is an address a webhook may reach only with
// --app-allow-private: loopback, private (RFC 1918, RFC 4193), link-local,
// multicast, unspecified, or another special-purpose range.
func Internal(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() {
		return true
	}
	for _, p := range internalRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// dialTimeout bounds a webhook's TCP connect.
const dialTimeout = 5 * time.Second

// newDialer returns the dialer webhooks connect with. Without
// allowPrivate it refuses internal addresses in Control, which runs on
// the address actually being connected to, after name resolution: a
// name that resolves (or is re-bound by its DNS) to an internal address
// is refused just the same as a literal one.
func newDialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrInternalAddress, address)
			}
			if Internal(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrInternalAddress, ap.Addr())
			}
			return nil
		}
	}
	return d
}

//go:build !linux

package relay

import "net/netip"

// portOwner is unknown off Linux.
func portOwner(netip.AddrPort) (int, string, bool) { return 0, "", false }

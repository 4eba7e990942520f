package callrate

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// freeRange finds n consecutive UDP ports on loopback that nothing holds,
// below the kernel's ephemeral range, so that a port another process binds
// to port 0 while the bench runs cannot land inside strait's media ranges.
// Other test packages run beside this one (go test ./... runs packages in
// parallel), so fixed ranges collide; a random start probed port by port
// makes a collision with another probing user unlikely, not impossible.
func freeRange(n int) (int, error) {
	low, _ := ephemeralLow()
	const floor = 10000
	if low-floor < n {
		return 0, fmt.Errorf("callrate: no room for %d ports between %d and the ephemeral range at %d", n, floor, low)
	}
	for range 50 {
		start := floor + rand.IntN(low-floor-n+1)
		if portsFree(start, n) {
			return start, nil
		}
	}
	return 0, fmt.Errorf("callrate: no %d free consecutive UDP ports found below %d", n, low)
}

// portsFree reports whether each of n ports from start can be bound on
// UDP loopback (each is bound and closed in turn).
func portsFree(start, n int) bool {
	for p := start; p < start+n; p++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, Linux's default).
func ephemeralLow() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768, err
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return 32768, fmt.Errorf("callrate: ip_local_port_range %q: %v", b, err)
	}
	return lo, nil
}

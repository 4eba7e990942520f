package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a port free on 127.0.0.1 for both UDP and TCP (SIP
// listens on both). Another process may take it before it is used; on
// loopback inside a namespace of its own nobody else is there.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", LoopbackIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", LoopbackIP, port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// FreeAddr returns 127.0.0.1:PORT with a FreePort.
func FreeAddr(t testing.TB) string { return hostPort(FreePort(t)) }

// PortRange returns a range of n UDP ports as "LOW-HIGH" (the form of
// strait's --rtp-ports), chosen at random from 10000 up to the kernel's
// ephemeral range, so that tests running on the host's loopback do not
// all pick the same one, and so that no port the kernel hands out (to
// FreePort, Kamailio, sipp, Chromium) can fall inside it: strait refuses
// to start on media ports another process holds.
func PortRange(t testing.TB, n int) string {
	t.Helper()
	for range 50 {
		r := portRangeCandidate(n)
		low, high := splitRange(r)
		if udpFree(low) && udpFree((low+high)/2) && udpFree(high) && claimPorts(t, low, high) {
			return r
		}
	}
	t.Fatalf("no free range of %d UDP ports", n)
	return ""
}

// claimed holds the port ranges this process's tests were handed and still
// use: two draws of one test (a sipp PBX's media ports and strait's
// WebRTC range) are both free when drawn, and without this could overlap;
// strait then refused to start on ports its own test's sipp held.
var claimed struct {
	sync.Mutex
	ranges [][2]int
}

// claimPorts records low-high as handed out until t ends, unless it
// overlaps a range handed out before.
func claimPorts(t testing.TB, low, high int) bool {
	claimed.Lock()
	defer claimed.Unlock()
	for _, r := range claimed.ranges {
		if low <= r[1] && r[0] <= high {
			return false
		}
	}
	claimed.ranges = append(claimed.ranges, [2]int{low, high})
	t.Cleanup(func() {
		claimed.Lock()
		defer claimed.Unlock()
		for i, r := range claimed.ranges {
			if r == [2]int{low, high} {
				claimed.ranges = append(claimed.ranges[:i], claimed.ranges[i+1:]...)
				return
			}
		}
	})
	return true
}

// portRangeCandidate picks n ports at a random even base between 10000
// and the start of the ephemeral range.
func portRangeCandidate(n int) string {
	top := ephemeralLow()
	low := 10000 + 2*rand.IntN((top-10000-n)/2)
	return fmt.Sprintf("%d-%d", low, low+n-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range (the
// ports bind to port 0 gets), 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if n, _ := fmt.Sscan(string(b), &low, &high); n != 2 || low < 12000 {
		return 32768
	}
	return low
}

func udpFree(port int) bool {
	u, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", LoopbackIP, port))
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// hostPort joins the loopback address and port.
func hostPort(port int) string { return fmt.Sprintf("%s:%d", LoopbackIP, port) }

// splitRange parses "LOW-HIGH".
func splitRange(r string) (low, high int) {
	a, b, _ := strings.Cut(r, "-")
	fmt.Sscan(a, &low)
	fmt.Sscan(b, &high)
	return low, high
}

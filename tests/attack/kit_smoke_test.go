package attack

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLegitimateCall checks the suite's own tools: the legitimate call
// works against an unattacked strait in both modes, and strait exports the
// resources every flood test reads.
func TestLegitimateCall(t *testing.T) {
	for _, mode := range []struct {
		name  string
		trunk bool
	}{{"standalone", false}, {"trunk", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			tg := startTarget(t, targetConfig{Trunk: mode.trunk})
			base := tg.resources()
			if base.Goroutines == 0 || base.HeapMB == 0 || base.FDs == 0 {
				t.Fatalf("strait does not export go_goroutines, go_memstats_heap_inuse_bytes and process_open_fds: %s", base)
			}
			took, err := tg.legitCall(tg.ctx(30e9))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("call answered in %s; before: %s", took, base)
			tg.waitResourcesBack(base, slack, 20e9)
		})
	}
}

// TestWire checks the attacker's raw SIP tools on every transport: an
// unauthenticated REGISTER from an attacker address is challenged (401
// with a digest WWW-Authenticate) and counted as a received REGISTER.
func TestWire(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	stop := make(chan struct{})
	top := tg.peak(stop, 100*time.Millisecond)
	ctx := tg.ctx(20 * time.Second)
	src := attackerIP(0)
	check := func(transport, res string) {
		t.Helper()
		if statusOf(res) != 401 || !strings.HasPrefix(header(res, "WWW-Authenticate"), "Digest ") {
			t.Fatalf("unauthenticated REGISTER over %s: got\n%s", transport, res)
		}
	}

	u, err := udpFrom(src)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	port := u.LocalAddr().(*net.UDPAddr).Port
	dst, _ := net.ResolveUDPAddr("udp4", tg.SIPAddr)
	if _, err := u.WriteTo([]byte(register("UDP", src, port, "127.0.0.1", legitUser, 1).String()), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := u.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	check("UDP", string(buf[:n]))

	c, err := dialTCPFrom(ctx, src, tg.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lport := c.LocalAddr().(*net.TCPAddr).Port
	if _, err := c.Write([]byte(register("TCP", src, lport, "127.0.0.1", legitUser, 1).String())); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := readSIPStream(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	check("TCP", res)

	w, err := dialWSFrom(ctx, src, tg.WS())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Send(register("WS", "abc.invalid", 0, "127.0.0.1", legitUser, 1).String()); err != nil {
		t.Fatal(err)
	}
	if res, err = w.Recv(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	check("WS", res)

	if n := tg.counter("strait_sip_requests_total", "method=REGISTER", "direction=in"); n < 3 {
		t.Fatalf("strait_sip_requests_total{method=REGISTER,direction=in} = %g, want at least 3", n)
	}
	close(stop)
	t.Logf("peak during the exchange: %s", <-top)
}

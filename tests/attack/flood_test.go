package attack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodSeconds is how long each flood lasts: 4 s by default;
// STRAIT_ATTACK_FLOOD_SECONDS=10 gives the measurement (50 000
// REGISTERs in 10 s).
func floodSeconds(t *testing.T) time.Duration {
	if v := os.Getenv("STRAIT_ATTACK_FLOOD_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			t.Fatalf("STRAIT_ATTACK_FLOOD_SECONDS=%q: want 1..60", v)
		}
		return time.Duration(n) * time.Second
	}
	return 4 * time.Second
}

// codes counts response codes.
type codes struct {
	mu sync.Mutex
	n  map[int]int
	// retryAfter counts 503s that carried Retry-After.
	retryAfter int
}

func (c *codes) add(res string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int]int{}
	}
	code := statusOf(res)
	c.n[code]++
	if code == 503 && header(res, "Retry-After") != "" {
		c.retryAfter++
	}
}

func (c *codes) get(code int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code]
}

func (c *codes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}

// udpFlood sends REGISTERs (each a new transaction: new Call-ID and
// branch) from src at rate a second until ctx ends, and counts what comes
// back in got.
func udpFlood(ctx context.Context, tg *target, src string, rate int, got *codes, a *attack) error {
	u, err := udpFrom(src)
	if err != nil {
		return err
	}
	defer u.Close()
	dst, err := net.ResolveUDPAddr("udp4", tg.SIPAddr)
	if err != nil {
		return err
	}
	port := u.LocalAddr().(*net.UDPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			u.SetReadDeadline(time.Now().Add(time.Second))
			n, err := u.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			got.add(string(buf[:n]))
		}
	}()
	user := "flood" + strings.ReplaceAll(src, ".", "")
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		due := int(time.Since(start).Seconds() * float64(rate))
		for ; sent < due; sent++ {
			m := register("UDP", src, port, "127.0.0.1", user, sent+1)
			if _, err := u.WriteTo([]byte(m.String()), dst); err != nil {
				return err
			}
			a.Sent.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	<-done
	return nil
}

// Issue 8 item 5, REGISTER flood over UDP: the measurement (50 000
// REGISTERs in 10 s took the heap to 340 MB) at 5 000 a second from 10
// addresses, with one more address alone at 2 000 a second. Each address
// must be held to its token bucket (the rest dropped and counted), the
// pending transactions to their bound (503 with Retry-After beyond it:
// --max-sip-transactions 1000 here, so that this machine reaches it), a
// legitimate call during the flood must work, and afterwards heap,
// goroutines and descriptors go back.
func TestRegisterFlood(t *testing.T) {
	// Not parallel: floods load the CPU, so they run alone, before the
	// parallel tests (see README).
	tg := startTarget(t, targetConfig{Args: []string{"--max-sip-transactions", "1000"}})
	base := tg.resources()
	d := floodSeconds(t)
	var lone, crowd codes
	stop := make(chan struct{})
	top := tg.peak(stop, 200*time.Millisecond)
	a := startAttack(t, d, func(ctx context.Context, a *attack) error {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		run := func(f func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(); err != nil && ctx.Err() == nil {
					errs <- err
				}
			}()
		}
		run(func() error { return udpFlood(ctx, tg, attackerIP(0), 2000, &lone, a) })
		for i := range 10 {
			run(func() error { return udpFlood(ctx, tg, attackerIP(10+i), 500, &crowd, a) })
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	tg.callDuring(a)
	a.wait(t)
	close(stop)
	peak := <-top

	m := tg.scrape()
	t.Logf("%d REGISTERs in %s; one address at 2 000/s: answers %s; 10 addresses at 500/s: answers %s (%d 503s with Retry-After)",
		a.Sent.Load(), d, lone.String(), crowd.String(), crowd.retryAfter)
	t.Logf("counted: %s", strings.ReplaceAll(series(m, "strait_sip_dropped_total"), "\n", ", "))
	t.Logf("resources: before %s; peak %s", base, peak)
	// Refused: the lone address gets its bucket's worth (200 + 100/s),
	// counting the seconds strait still spends on the socket's backlog
	// after the attacker stopped.
	if max, got := 200+100*int(d.Seconds()+3), lone.get(401)+lone.get(503); got > max {
		t.Errorf("one address at 2 000/s got %d answers in %s, want at most %d", got, d, max)
	}
	if value(m, "strait_sip_dropped_total", "reason=rate", "transport=udp") == 0 {
		t.Error("no UDP message dropped for its rate")
	}
	if value(m, "strait_sip_dropped_total", "reason=overload") == 0 || crowd.retryAfter == 0 {
		t.Errorf("the bound on pending transactions was never reached (503s with Retry-After: %d)", crowd.retryAfter)
	}
	if peak.HeapMB > base.HeapMB+64 {
		t.Errorf("heap peaked at %.0f MB (base %.0f MB)", peak.HeapMB, base.HeapMB)
	}
	tg.waitBack(base)
}

// waitBack waits until the pending transactions' timers have ended (32 s
// over UDP), then until memory, goroutines and descriptors are back near
// base.
func (tg *target) waitBack(base resources) {
	tg.t.Helper()
	waitFor(tg.t, 60*time.Second, "pending server transactions back to 0", func() (bool, string) {
		n := tg.counter("strait_sip_server_transactions")
		return n == 0, fmt.Sprintf("%g pending", n)
	})
	// The heap too: strait collects and returns a flood's memory once its
	// transactions are gone (sipnet.Stack.Relieve, every 5 s).
	back := slack
	back.HeapMB = 6
	after := tg.waitResourcesBack(base, back, 30*time.Second)
	tg.t.Logf("after the flood: %s", after)
}

// Issue 8 item 5, floods over streams: one address sends 1 500 OPTIONS a
// second over TCP, another over WebSocket. TCP connections that outrun
// their bucket are closed (a stream cannot lose part of itself), WebSocket
// frames beyond it dropped; both counted; a call during it works; the
// resources come back.
func TestStreamFlood(t *testing.T) {
	// Not parallel: floods load the CPU, so they run alone, before the
	// parallel tests (see README).
	tg := startTarget(t, targetConfig{})
	base := tg.resources()
	d := floodSeconds(t)
	var st [2]streamStats
	a := startAttack(t, d, func(ctx context.Context, a *attack) error {
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, transport := range []string{"TCP", "WS"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := streamFlood(ctx, tg, transport, attackerIP(1+i), &st[i], a); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	tg.callDuring(a)
	a.wait(t)
	m := tg.scrape()
	for i, transport := range []string{"TCP", "WS"} {
		t.Logf("%s: %d OPTIONS sent in %s on %d connections (%d dials timed out)", transport,
			st[i].sent.Load(), d, st[i].connections.Load(), st[i].dialTimeouts.Load())
	}
	t.Logf("counted: %s", strings.ReplaceAll(series(m, "strait_sip_dropped_total"), "\n", ", "))
	for _, transport := range []string{"tcp", "ws"} {
		if value(m, "strait_sip_dropped_total", "reason=rate", "transport="+transport) == 0 {
			t.Errorf("no %s message dropped for its rate", transport)
		}
	}
	// Refused: the TCP flooder lost its connection whenever it outran its
	// bucket (200 at once, 100 a second), so it needed more than one.
	if st[0].connections.Load() < 2 {
		t.Errorf("the TCP flooder kept its connection (%d OPTIONS sent)", st[0].sent.Load())
	}
	tg.waitBack(base)
}

// streamStats is what one stream flooder did.
type streamStats struct {
	sent, connections, dialTimeouts atomic.Int64
}

// streamFloodRate is what one stream flooder sends a second: 15 times its
// bucket, without saturating this machine's CPU for the whole suite.
const streamFloodRate = 1500

// streamFlood sends OPTIONS at streamFloodRate over one TCP or WebSocket
// connection from src, opening a new one whenever strait closes it.
func streamFlood(ctx context.Context, tg *target, transport, src string, st *streamStats, a *attack) error {
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := openSession(dctx, tg, transport, src)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if transport == "TCP" && errors.As(err, &ne) && ne.Timeout() {
				// strait closed the last connection first, so the
				// TIME_WAIT is on its side; a SYN that reuses the
				// 4-tuple can go unanswered for a second. The attacker
				// tries again, as a real one would.
				st.dialTimeouts.Add(1)
				continue
			}
			return err
		}
		st.connections.Add(1)
		_, host, port := s.Via()
		var send func(string) error
		switch c := s.(type) {
		case tcpSess:
			send = func(m string) error { _, err := c.c.Write([]byte(m)); return err }
			go drain(c.c)
		case wsSess:
			send = c.c.Send
			go drain(c.c.Conn)
		}
		start, n := time.Now(), 0
		for ctx.Err() == nil {
			if due := int(time.Since(start).Seconds() * streamFloodRate); n >= due {
				time.Sleep(time.Millisecond)
				continue
			}
			m := options(transport, hostPort(host, port), "127.0.0.1")
			if err := send(m.String()); err != nil {
				break // closed by strait: reconnect
			}
			n++
			st.sent.Add(1)
			a.Sent.Add(1)
		}
		s.Close()
	}
	return nil
}

// drain reads and discards what a connection receives until it closes.
func drain(c net.Conn) {
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

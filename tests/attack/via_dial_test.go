package attack

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 8 item 7. A request over TCP or WebSocket whose connection closes
// before the response makes sipgo's server transaction look for another
// way back: it dialled the top Via's sent-by, so any attacker got a TCP
// connect-and-write toward an internal host (127.0.0.3 here stands for
// one). Responses must go back on the connection the request came on, or
// nowhere, and be counted.
func TestResponsesNeverDialVia(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})

	// The "internal host": counts the connections strait makes to it.
	internal, err := net.Listen("tcp4", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer internal.Close()
	var dialled atomic.Int64
	go func() {
		for {
			c, err := internal.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close()
		}
	}()
	sentBy := internal.Addr().String()

	// Each connection carries a burst of pipelined OPTIONS whose Via names
	// the internal host, then is reset at once: sipgo handles each request
	// in a goroutine of its own, so most find the connection gone.
	const burst = 20
	a := startAttack(t, 3*time.Second, func(ctx context.Context, a *attack) error {
		for i := 0; ctx.Err() == nil && i < 200; i++ {
			src := attackerIP(i % 8)
			var batch strings.Builder
			var send func(string) error
			var closeConn func()
			if i%2 == 0 {
				c, err := dialTCPFrom(ctx, src, tg.SIPAddr)
				if err != nil {
					return fmt.Errorf("tcp: %w", err)
				}
				for range burst {
					batch.WriteString(options("TCP", sentBy, "127.0.0.1").String())
				}
				send = func(s string) error { _, err := c.Write([]byte(s)); return err }
				closeConn = func() { c.SetLinger(0); c.Close() }
			} else {
				c, err := dialWSFrom(ctx, src, tg.WS())
				if err != nil {
					return fmt.Errorf("ws: %w", err)
				}
				send = func(string) error {
					for range burst {
						if err := c.Send(options("WS", sentBy, "127.0.0.1").String()); err != nil {
							return err
						}
					}
					return nil
				}
				closeConn = func() {
					if tc, ok := c.Conn.(*net.TCPConn); ok {
						tc.SetLinger(0)
					}
					c.Close()
				}
			}
			err := send(batch.String())
			closeConn()
			if err != nil {
				return err
			}
			a.Sent.Add(burst)
		}
		return nil
	})
	tg.callDuring(a)
	a.wait(t)

	if n := dialled.Load(); n > 0 {
		t.Errorf("strait connected %d times to the Via sent-by %s of requests whose connection had closed", n, sentBy)
	}
	t.Logf("%d requests with Via %s on connections reset at once: 0 connections to it, %g dials refused and counted",
		a.Sent.Load(), sentBy, tg.waitCounted(1, "strait_sip_dropped_total", "reason=dial_refused"))
}

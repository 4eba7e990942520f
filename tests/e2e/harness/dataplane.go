package harness

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Dataplane is a running strait-dataplane node on free loopback ports, for
// a strait started with Dataplane.Flag (--dataplane grpc://...).
type Dataplane struct {
	*Process
	// GRPCAddr is where control planes reach it; MetricsAddr serves
	// /metrics, /healthz and /readyz.
	GRPCAddr, MetricsAddr string
	// RTPPorts and WebRTCPorts are the media port ranges it was given.
	RTPPorts, WebRTCPorts string
}

// Flag is strait's --dataplane value for the node.
func (d *Dataplane) Flag() string { return "grpc://" + d.GRPCAddr }

// StartDataplane starts strait-dataplane (built beside strait by Main) and
// waits until it is ready. The test skips (fails in CI) without it.
func (e *Env) StartDataplane() *Dataplane {
	e.t.Helper()
	bin := DataplaneBin()
	if bin == "" {
		if CI() {
			e.t.Fatal("strait-dataplane binary not available beside strait")
		}
		e.t.Skip("strait-dataplane binary not available beside strait")
	}
	low, _ := splitRange(PortRange(e.t, 220))
	d := &Dataplane{
		GRPCAddr:    FreeAddr(e.t),
		MetricsAddr: FreeAddr(e.t),
		RTPPorts:    fmt.Sprintf("%d-%d", low, low+199),
		WebRTCPorts: fmt.Sprintf("%d-%d", low+200, low+219),
	}
	p, err := e.startProcess("strait-dataplane", "", nil, 5*time.Second, bin,
		"--grpc", d.GRPCAddr, "--metrics", d.MetricsAddr,
		"--media-ip", LoopbackIP, "--public-ip", LoopbackIP,
		"--rtp-ports", d.RTPPorts, "--webrtc-ports", d.WebRTCPorts,
		"--log-level", "debug")
	if err != nil {
		e.t.Fatal(err)
	}
	d.Process = p
	e.Step("strait-dataplane ready (GET /readyz)", 20*time.Second, func(ctx context.Context) error {
		for {
			if p.Exited() {
				return fmt.Errorf("strait-dataplane exited (%v) before it was ready:\n%s", p.err, lastLines(p.Log(), 30))
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.MetricsAddr+"/readyz", nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("/readyz not 200: %w", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return d
}

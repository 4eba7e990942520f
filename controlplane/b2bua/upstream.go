package b2bua

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// upstreamTTL is how long the upstream's resolved addresses are trusted
// (a PBX named by DNS may move).
const upstreamTTL = time.Minute

// isUpstream reports whether a source IP is the upstream's: its literal
// address, or one its name resolves to.
func (e *Engine) isUpstream(ip string) bool {
	host := e.cfg.Upstream.Host
	src, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	src = src.Unmap()
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.Unmap() == src
	}
	e.mu.Lock()
	if time.Since(e.upAt) > upstreamTTL {
		e.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		e.mu.Lock()
		if err == nil {
			e.upAddrs, e.upAt = addrs, time.Now()
		} else {
			e.log.Warn("cannot resolve the upstream", "host", host, "err", err)
		}
	}
	defer e.mu.Unlock()
	for _, a := range e.upAddrs {
		if a.Unmap() == src {
			return true
		}
	}
	return false
}

// pingUpstream sends OPTIONS to the upstream every OptionsInterval and
// records whether it answers (any response means alive).
func (e *Engine) pingUpstream() {
	defer e.wg.Done()
	// The first ping waits an interval too: a PBX that just started is
	// given time, and a scripted test PBX sees calls before pings.
	t := time.NewTicker(e.cfg.OptionsInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		up := e.cfg.Upstream
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: up.Host, Port: up.Port})
		local := sip.Uri{Scheme: "sip", User: "strait", Host: e.st.Host()}
		from := &sip.FromHeader{Address: local, Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(16))
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: up.Host}, Params: sip.NewParams()})
		cid := sip.CallIDHeader(sip.GenerateTagN(24))
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
		e.st.Prepare(req, sipnet.Route{Transport: up.Transport, Dest: up.Addr()})
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		res, err := e.st.Do(ctx, req)
		cancel()
		alive := err == nil && res != nil
		e.mu.Lock()
		changed := !e.pinged || alive != e.upstream
		e.upstream, e.pinged = alive, true
		e.mu.Unlock()
		e.cfg.Metrics.SetUpstreamUp(alive)
		if changed {
			if alive {
				e.log.Info("upstream answers OPTIONS", "upstream", up.Addr())
			} else {
				e.log.Warn("upstream does not answer OPTIONS", "upstream", up.Addr(), "err", err)
			}
		}
	}
}

// UpstreamUp reports whether the upstream answered the last OPTIONS ping
// (true when there is no upstream, no pinging, or no ping yet).
func (e *Engine) UpstreamUp() bool {
	if e.cfg.Upstream == nil || e.cfg.OptionsInterval == 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.pinged || e.upstream
}

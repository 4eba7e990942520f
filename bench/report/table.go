package report

import (
	"fmt"
	"strings"
)

// Table renders the results as a Markdown table, one row per result, with
// the figures a reader compares first: rates, loss, system calls and CPU
// per packet, latency and what each relay adds to it, the ratios, and
// whether the harness or the relay could not keep up.
func Table(r *Report) string {
	var b strings.Builder
	b.WriteString("| target | node | io | SRTP | plain ports | sessions | asked pps | delivered pps | loss | syscalls/pkt | sched slices/pkt | CPU ns/pkt | harness cores | runq wait node / harness (s/s) | p50 µs | p99 µs | added p99 µs (vs plain) | p99 over harness µs | ratio to plain | ratio to rtpengine | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	f := func(p *float64, format string) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf(format, *p)
	}
	for _, x := range r.Results {
		srtp := x.SRTP
		if srtp == "" {
			srtp = "–"
		}
		if x.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | | | | | | | | | | | | | | | skipped: %s |\n",
				x.Target, x.Node, x.IO, srtp, x.PlainPorts, x.Sessions, x.Skipped)
			continue
		}
		var notes []string
		if x.GeneratorLimited {
			notes = append(notes, "**generator-limited**")
		}
		switch {
		case x.Saturated:
			notes = append(notes, "**saturated**: "+x.SaturatedNote)
		case x.SinkLimited:
			notes = append(notes, "**sink-limited**: "+x.SaturatedNote)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %.0f | %.0f | %.3f%% | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |\n",
			x.Target, x.Node, x.IO, srtp, x.PlainPorts, x.Sessions, x.RequestedPPS, x.DeliveredPPS, 100*x.LossRatio,
			f(x.SyscallsPerPacket, "%.3f"), f(x.NodeSlicesPerPacket, "%.3f"), f(x.NodeCPUnsPerPacket, "%.0f"), f(x.HarnessCPUCores, "%.2f"), f(x.NodeRunqWait, "%.3f"), f(x.HarnessRunqWait, "%.3f"),
			f(x.LatencyP50us, "%.0f"), f(x.LatencyP99us, "%.0f"), f(x.AddedLatencyP99us, "%+.0f"), f(x.OverHarnessLatencyP99us, "%+.0f"),
			f(x.CPURatioToPlain, "%.2f"), f(x.CPURatioToRtpengine, "%.2f"), strings.Join(notes, "; "))
	}
	return b.String()
}

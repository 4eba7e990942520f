package report

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot draws the report to path (.svg or .png): delivered packets per
// second, the relay's CPU per packet and its system calls per packet
// against the number of sessions (a scale run's steps, or the results of
// each session count of a run: one line per target and configuration),
// and the one-way latency distribution of each result at the run's largest
// session count.
func Plot(r *Report, path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("plot %s: want .svg or .png", path)
	}
	thr := newPlot(fmt.Sprintf("Delivered packets/s (%s)", r.Mode), "sessions", "packets/s")
	cpu := newPlot("Relay CPU per packet forwarded", "sessions", "ns/packet")
	sys := newPlot("Relay system calls per packet forwarded (whole process)", "sessions", "system calls/packet")
	lat := newPlot("One-way latency through the relay (send to receive)", "µs", "fraction of packets at or below")
	for _, p := range []*plot.Plot{thr, cpu, sys, lat} {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	}
	lat.Y.Min, lat.Y.Max = 0, 1
	thr.Y.Min, cpu.Y.Min, sys.Y.Min = 0, 0, 0 // differences in proportion
	drawn := map[*plot.Plot]bool{}
	largest := 0
	for _, res := range r.Results {
		if res.Skipped == "" {
			largest = max(largest, res.Sessions)
		}
	}
	series := map[string]*struct{ tp, cp, sp plotter.XYs }{}
	var names []string
	for _, res := range r.Results {
		if res.Skipped != "" {
			continue
		}
		name := label(res)
		sr := series[name]
		if sr == nil {
			sr = &struct{ tp, cp, sp plotter.XYs }{}
			series[name] = sr
			names = append(names, name)
		}
		if len(res.Steps) > 0 && r.Mode == "scale" {
			for _, s := range res.Steps {
				sr.tp = append(sr.tp, plotter.XY{X: float64(s.Sessions), Y: s.DeliveredPPS})
				if s.NodeCPUnsPerPacket != nil {
					sr.cp = append(sr.cp, plotter.XY{X: float64(s.Sessions), Y: *s.NodeCPUnsPerPacket})
				}
				if s.SyscallsPerPacket != nil {
					sr.sp = append(sr.sp, plotter.XY{X: float64(s.Sessions), Y: *s.SyscallsPerPacket})
				}
			}
		} else {
			x := float64(res.Sessions)
			sr.tp = append(sr.tp, plotter.XY{X: x, Y: res.DeliveredPPS})
			// The harness-only case's CPU is the harness's, not a relay's:
			// its throughput and latency (the floor) are drawn, not its CPU.
			if res.NodeCPUnsPerPacket != nil && res.Target != TargetHarness {
				sr.cp = append(sr.cp, plotter.XY{X: x, Y: *res.NodeCPUnsPerPacket})
			}
			if res.SyscallsPerPacket != nil {
				sr.sp = append(sr.sp, plotter.XY{X: x, Y: *res.SyscallsPerPacket})
			}
		}
		if res.Sessions != largest {
			continue
		}
		if cdf := latencyCDF(res.Latency); len(cdf) > 0 {
			l, err := plotter.NewLine(cdf)
			if err != nil {
				return err
			}
			l.Color = plotutil.Color(len(names) - 1)
			l.Width = vg.Points(1.5)
			lat.Add(l)
			lat.Legend.Add(fmt.Sprintf("%s, %d sessions", name, res.Sessions), l)
			drawn[lat] = true
		}
	}
	for i, name := range names {
		sr := series[name]
		col, shape := plotutil.Color(i), plotutil.Shape(i)
		for _, ps := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{thr, sr.tp}, {cpu, sr.cp}, {sys, sr.sp}} {
			sort.Slice(ps.xys, func(a, b int) bool { return ps.xys[a].X < ps.xys[b].X })
			if err := addSeries(ps.p, name, ps.xys, col, shape); err != nil {
				return err
			}
			drawn[ps.p] = drawn[ps.p] || len(ps.xys) > 0
		}
	}
	for _, p := range []*plot.Plot{thr, cpu, sys, lat} {
		p.Add(plotter.NewGrid())
		if !drawn[p] {
			// Nothing to draw: a log axis over no data would panic.
			p.X.Scale, p.X.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		}
	}
	plots := [][]*plot.Plot{{thr}, {cpu}, {sys}, {lat}}
	w, h := 9*vg.Inch, 18*vg.Inch
	var c vg.CanvasWriterTo
	var dc draw.Canvas
	if ext == ".svg" {
		sc := vgsvg.New(w, h)
		c, dc = sc, draw.New(sc)
	} else {
		ic := vgimg.New(w, h)
		c, dc = vgimg.PngCanvas{Canvas: ic}, draw.New(ic)
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 10}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		plots[j][0].Draw(canvases[j][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

func addSeries(p *plot.Plot, name string, xys plotter.XYs, col color.Color, shape draw.GlyphDrawer) error {
	if len(xys) == 0 {
		return nil
	}
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = col, shape, vg.Points(4)
	p.Add(sc)
	if len(xys) > 1 {
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = col
		p.Add(l)
	}
	p.Legend.Add(name, sc)
	return nil
}

func label(r *Result) string {
	s := r.Target
	if r.Node != "" {
		s += " " + r.Node
	}
	if r.IO != "" {
		s += " " + r.IO
	}
	if r.SRTP != "" {
		s += " " + r.SRTP
	}
	return s + " (" + r.PlainPorts + ")"
}

// latencyCDF turns histogram buckets into a cumulative distribution.
func latencyCDF(h [][2]float64) plotter.XYs {
	pts := append([][2]float64(nil), h...)
	sort.Slice(pts, func(i, j int) bool { return pts[i][0] < pts[j][0] })
	var total float64
	for _, p := range pts {
		total += p[1]
	}
	if total == 0 {
		return nil
	}
	var out plotter.XYs
	var cum float64
	for _, p := range pts {
		if p[0] <= 0 {
			continue
		}
		cum += p[1]
		out = append(out, plotter.XY{X: p[0], Y: cum / total})
	}
	return out
}

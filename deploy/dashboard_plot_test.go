package deploy

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// units names Grafana's units on a plot's Y axis.
var units = map[string]string{"pps": "packets/s", "cps": "calls/s", "reqps": "requests/s", "s": "seconds",
	"percentunit": "fraction", "none": "", "short": ""}

// plotDashboard draws the panels as a grid of plots (three to a row), each
// series a line with its Grafana legend, into a PNG at path. Series that
// stay at 0 over the whole run (a retransmission count on a clean
// loopback, say) are left out, as their legend would crowd the picture.
func plotDashboard(panels []panelData, path, title string) error {
	const cols = 3
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	end := 0.0 // the run's length: every panel's X axis
	for _, pd := range panels {
		for _, s := range pd.Series {
			for _, x := range s.X {
				end = math.Max(end, x)
			}
		}
	}
	for i, pd := range panels {
		p := plot.New()
		p.X.Min, p.X.Max = 0, end
		p.Title.Text = pd.Title
		p.X.Label.Text = "seconds into the run"
		p.X.Tick.Marker = plainTicks{}
		scale, unit := scaleFor(pd)
		p.Y.Label.Text = unit
		// The legend goes where the lines are not: below lines that keep
		// to the upper half (MOS), above the others.
		p.Legend.Top, p.Legend.Left = !upperHalf(pd), true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		n := 0
		for _, s := range pd.Series {
			if allZero(s.Y) || n == 8 {
				continue
			}
			xys := make(plotter.XYs, len(s.X))
			for j := range s.X {
				xys[j].X, xys[j].Y = s.X[j], s.Y[j]*scale
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("panel %q: %w", pd.Title, err)
			}
			l.Color, l.Width = plotutil.Color(n), vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(s.Legend, l)
			n++
		}
		if n == 0 {
			p.Title.Text += " (all 0)"
			p.Y.Max = 1
		}
		grid[i/cols][i%cols] = p
	}
	for _, row := range grid {
		for j := range row {
			if row[j] == nil {
				row[j] = plot.New()
				row[j].HideAxes()
			}
		}
	}
	w, h := vg.Length(cols)*6*vg.Inch, vg.Length(rows)*3.6*vg.Inch+0.6*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
	dc := draw.New(img)
	head := plot.New()
	head.Title.Text = title
	head.Title.TextStyle.Font.Size = vg.Points(16)
	head.HideAxes()
	head.Draw(draw.Crop(dc, 0, 0, h-0.6*vg.Inch, 0))
	body := draw.Crop(dc, 0, 0, 0, -0.6*vg.Inch)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4,
		PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 4, PadX: vg.Millimeter * 8, PadY: vg.Millimeter * 8}
	canvases := plot.Align(grid, tiles, body)
	for i := range grid {
		for j := range grid[i] {
			grid[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func allZero(ys []float64) bool {
	for _, y := range ys {
		if y != 0 {
			return false
		}
	}
	return true
}

// scaleFor picks the unit a panel's values read best in, as Grafana does
// for seconds: microseconds or milliseconds for small ones.
func scaleFor(pd panelData) (float64, string) {
	if pd.Unit != "s" {
		return 1, units[pd.Unit]
	}
	max := 0.0
	for _, s := range pd.Series {
		for _, y := range s.Y {
			max = math.Max(max, y)
		}
	}
	switch {
	case max > 0 && max < 1e-3:
		return 1e6, "µs"
	case max > 0 && max < 1:
		return 1e3, "ms"
	}
	return 1, "seconds"
}

// upperHalf reports whether a panel's values sit mostly above half its
// largest one.
func upperHalf(pd panelData) bool {
	max, sum, n := 0.0, 0.0, 0
	for _, s := range pd.Series {
		for _, y := range s.Y {
			max, sum, n = math.Max(max, y), sum+y, n+1
		}
	}
	return n > 0 && sum/float64(n) > max/2
}

// plainTicks are gonum's default ticks labelled without trailing zeros.
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}

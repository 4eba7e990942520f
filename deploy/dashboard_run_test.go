package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// The dashboard, drawn from a real run (issue 13: Grafana is not in
// Debian, so the panels are evaluated here and plotted): strait, built as
// the Dockerfile builds it, in trunk mode toward sipp (uas_echo.xml with
// -rtp_echo), carries calls placed through its HTTP API by WebRTC peers
// (pion, package dataplane/mediatest: ICE, DTLS-SRTP, RTCP reports) that
// stream PCMU for 8-20 s each, some over a clean path and some losing and
// delaying their packets. Its /metrics is scraped every scrapeEvery into
// a Prometheus TSDB (teststorage) as Prometheus would, each panel's
// queries from deploy/grafana/strait.json are evaluated over the run by
// Prometheus's own PromQL engine as Grafana would ask for them, and the
// series are drawn (dashboard_plot_test.go).
//
// By default the run lasts 30 s and the picture goes to the test's
// temporary directory; STRAIT_UPDATE_DASHBOARD=1 runs 3 minutes and writes
// docs/dashboard.png, the README's picture.

// scrapeEvery is the scrape interval; rateWindow is what $__rate_interval
// stands for (Grafana: at least four scrape intervals).
const (
	scrapeEvery = 2 * time.Second
	rateWindow  = "20s"
)

// dashboardPanels are the panels drawn, by title: calls, setup time,
// SIP, media packets and drops, and quality.
var dashboardPanels = []string{
	"Calls in progress", "Calls by final answer", "Call setup time",
	"SIP requests", "SIP transaction failures and retransmissions", "RTP packets",
	"Drops by reason", "CPU per packet", "Estimated MOS",
	"Packet loss", "Jitter", "Sessions per node",
}

// panelSeries is one query's result: legend and points (seconds since the
// run started, value).
type panelSeries struct {
	Legend string
	X, Y   []float64
}

type panelData struct {
	Title, Unit string
	Series      []panelSeries
}

func TestDashboardFromRealRun(t *testing.T) {
	t.Parallel() // beside TestDashboardAndAlertsNameRealMetrics: both wait on the binaries and their processes
	if _, err := exec.LookPath("sipp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sipp is not installed (scripts/install-test-deps.sh)")
		}
		t.Skip("sipp is not installed (scripts/install-test-deps.sh)")
	}
	run, out := 20*time.Second, filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("STRAIT_UPDATE_DASHBOARD") == "1" {
		run, out = 3*time.Minute, filepath.Join("..", "docs", "dashboard.png")
	}
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), run+2*time.Minute)
	defer cancel()

	pbxPort, mediaPort := freeUDPPort(t, 1), freeUDPPort(t, 4)
	scenario, err := filepath.Abs(filepath.Join("..", "tests", "e2e", "sipp", "uas_echo.xml"))
	if err != nil {
		t.Fatal(err)
	}
	pbx := exec.Command("sipp", "-sf", scenario,
		"-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", fmt.Sprint(pbxPort), "-mp", fmt.Sprint(mediaPort), "-rtp_echo",
		"-m", "100000", "-nostdin", "-aa", "-trace_err")
	pbx.Dir = t.TempDir()
	sippOut, _ := os.Create(filepath.Join(pbx.Dir, "sipp.out"))
	defer sippOut.Close()
	pbx.Stdout, pbx.Stderr = sippOut, sippOut
	defer func() {
		if t.Failed() {
			out, _ := exec.Command("sh", "-c", "tail -c 3000 "+pbx.Dir+"/*").CombinedOutput()
			t.Logf("sipp:\n%s", out)
		}
	}()
	if err := pbx.Start(); err != nil {
		t.Fatalf("sipp: %v", err)
	}
	defer func() { pbx.Process.Kill(); pbx.Wait() }()

	// Strait's media ports: 40 free ones in 20000-29599, under the
	// ephemeral range (strait refuses to start on a port another process
	// holds).
	base := freeUDPRange(t, 20000, 240, 40)
	addr, stop := startBinary(ctx, t, filepath.Join(bins, "strait"), "strait started", "http", []string{
		"--http", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--state", "memory", "--log-format", "json",
		"--media-ip", "127.0.0.1", "--public-ip", "127.0.0.1", "--data-dir", t.TempDir(),
		// No OPTIONS pings: sipp's scenario takes one for a call.
		"--options-interval", "0",
		"--api-token", "t", "--upstream", fmt.Sprintf("sip:127.0.0.1:%d;transport=udp", pbxPort), "--pbx-authenticates-calls",
		"--webrtc-ports", fmt.Sprintf("%d-%d", base, base+3), "--rtp-ports", fmt.Sprintf("%d-%d", base+4, base+39)})
	defer stop()
	api := "http://" + addr

	db := teststorage.New(t)
	start := time.Now()
	scrapeCtx, stopScraping := context.WithCancel(ctx)
	var scrapes sync.WaitGroup
	scrapes.Go(func() { scrapeInto(scrapeCtx, t, api+"/metrics", "t", db) })

	var calls sync.WaitGroup
	var mu sync.Mutex
	placed, failed := 0, 0
	for w := range 6 { // six callers, so a few calls are up at any time
		calls.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			time.Sleep(time.Duration(w) * 1500 * time.Millisecond) // staggered
			for time.Since(start) < run-10*time.Second && ctx.Err() == nil {
				path := callPaths[rng.IntN(len(callPaths))]
				length := 8*time.Second + time.Duration(rng.Int64N(int64(12*time.Second)))
				err := loadCall(ctx, api, "t", path, length, rng)
				mu.Lock()
				placed++
				if err != nil {
					failed++
					t.Logf("call (%+v): %v", path, err)
				}
				mu.Unlock()
			}
		})
	}
	calls.Wait()
	time.Sleep(time.Until(start.Add(run))) // the tail: calls ended, quality settled
	stopScraping()
	scrapes.Wait()
	end := time.Now()
	// A call may fail on a machine too loaded for ICE and DTLS within
	// their timeouts; the panels below still need calls that went through.
	if placed == 0 || failed > placed/2 {
		t.Fatalf("%d calls placed, %d failed", placed, failed)
	}

	panels := evalPanels(t, db, "grafana/strait.json", start, end)
	for _, p := range panels {
		points := 0
		for _, s := range p.Series {
			points += len(s.X)
		}
		t.Logf("panel %q: %d series, %d points", p.Title, len(p.Series), points)
	}
	// The run carried calls with media: the panels about them have data.
	for _, title := range []string{"Calls in progress", "Call setup time", "SIP requests", "RTP packets", "Estimated MOS", "Packet loss", "Jitter"} {
		if max := panelMax(panels, title); !(max > 0) {
			t.Errorf("panel %q shows nothing (max %v) after %d calls", title, max, placed)
		}
	}
	if m := panelMax(panels, "Estimated MOS"); m > 4.5 || m < 1 {
		t.Errorf("MOS up to %v: outside the E-model's 1-4.5", m)
	}
	if err := plotDashboard(panels, out, fmt.Sprintf("Strait, %s run: %d calls (API -> strait -> sipp echo), %s",
		run.Round(time.Second), placed, time.Now().UTC().Format("2006-01-02"))); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls (%d failed) in %v; dashboard drawn to %s", placed, failed, end.Sub(start).Round(time.Second), out)
}

// callPaths are the paths the load's calls take: clean, or losing and
// delaying packets on the way in (a bad Wi-Fi, a congested uplink).
var callPaths = []struct {
	Loss   float64
	Jitter time.Duration
}{{0, 0}, {0, 0}, {0.01, 10 * time.Millisecond}, {0.03, 30 * time.Millisecond}, {0.08, 60 * time.Millisecond}}

// loadCall places one call to extension 1000 through the HTTP API,
// streams PCMU for length (skipping a fraction loss of the packets, as if
// lost, and sending each up to jitter late, in order), and hangs up.
func loadCall(ctx context.Context, api, token string, path struct {
	Loss   float64
	Jitter time.Duration
}, length time.Duration, rng *rand.Rand) error {
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		return err
	}
	defer b.Close()
	body, _ := json.Marshal(map[string]string{"to": "1000", "from": "alice", "offer": b.Offer})
	var placed struct{ ID, Answer string }
	if err := apiDo(ctx, "POST", api+"/v1/calls", token, body, &placed); err != nil {
		return err
	}
	defer apiDo(context.Background(), "DELETE", api+"/v1/calls/"+placed.ID, token, nil, nil)
	if err := b.Accept(placed.Answer); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.WaitConnected(wctx); err != nil {
		return err
	}
	payload := bytes.Repeat([]byte{0xd5}, 160) // 20 ms of PCMU
	t0, last := time.Now(), time.Now()
	for i := 0; time.Since(t0) < length && ctx.Err() == nil; i++ {
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		if path.Jitter > 0 {
			at = at.Add(time.Duration(rng.Int64N(int64(path.Jitter))))
		}
		if at.Before(last) {
			at = last // late, but in order
		}
		time.Sleep(time.Until(at))
		last = at
		if rng.Float64() < path.Loss {
			continue
		}
		if err := b.Send(0, uint16(i), uint32(i*160), i == 0, payload); err != nil {
			return err
		}
	}
	return nil
}

func apiDo(ctx context.Context, method, url, token string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, url, res.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// freeUDPPort returns a port p with p..p+n-1 free on 127.0.0.1 (UDP), in
// 10000-19999.
func freeUDPPort(t *testing.T, n int) int { return freeUDPRange(t, 10000, 5000/n, n) }

// freeUDPRange returns a port p = low + n*i (i < slots) with p..p+n-1 free
// on 127.0.0.1 (UDP).
func freeUDPRange(t *testing.T, low, slots, n int) int {
	t.Helper()
	for range 100 {
		p := low + n*rand.IntN(slots)
		free := true
		for i := range n {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+i))
			if err != nil {
				free = false
				break
			}
			c.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free UDP ports")
	return 0
}

// scrapeInto scrapes url every scrapeEvery until ctx ends and appends the
// samples to db with the labels Prometheus adds (job, instance), stamped
// with the scrape's time, as Prometheus does.
func scrapeInto(ctx context.Context, t *testing.T, url, token string, db storage.Appendable) {
	tick := time.NewTicker(scrapeEvery)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		now := time.Now()
		if res, err := http.DefaultClient.Do(req); err == nil {
			p := expfmt.NewTextParser(model.UTF8Validation)
			families, err := p.TextToMetricFamilies(res.Body)
			res.Body.Close()
			if err == nil {
				err = appendFamilies(db, families, now)
			}
			if err != nil {
				t.Errorf("scrape at %v: %v", now.Format(time.TimeOnly), err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func appendFamilies(db storage.Appendable, families map[string]*dto.MetricFamily, at time.Time) error {
	app := db.Appender(context.Background())
	ts := at.UnixMilli()
	add := func(name string, ls []*dto.LabelPair, extra map[string]string, v float64) error {
		b := labels.NewScratchBuilder(len(ls) + 4)
		b.Add(model.MetricNameLabel, name)
		b.Add("job", "strait")
		b.Add("instance", "strait:8080")
		for _, l := range ls {
			b.Add(l.GetName(), l.GetValue())
		}
		for k, v := range extra {
			b.Add(k, v)
		}
		b.Sort()
		_, err := app.Append(0, b.Labels(), ts, v)
		return err
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var err error
			switch {
			case m.GetCounter() != nil:
				err = add(name, m.GetLabel(), nil, m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				err = add(name, m.GetLabel(), nil, m.GetGauge().GetValue())
			case m.GetUntyped() != nil:
				err = add(name, m.GetLabel(), nil, m.GetUntyped().GetValue())
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					if err = add(name+"_bucket", m.GetLabel(), map[string]string{"le": formatLe(bk.GetUpperBound())}, float64(bk.GetCumulativeCount())); err != nil {
						break
					}
				}
				if err == nil {
					err = add(name+"_bucket", m.GetLabel(), map[string]string{"le": "+Inf"}, float64(h.GetSampleCount()))
				}
				if err == nil {
					err = add(name+"_sum", m.GetLabel(), nil, h.GetSampleSum())
				}
				if err == nil {
					err = add(name+"_count", m.GetLabel(), nil, float64(h.GetSampleCount()))
				}
			}
			if err != nil {
				app.Rollback()
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return app.Commit()
}

func formatLe(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return model.SampleValue(v).String()
}

// evalPanels evaluates the queries of the dashboardPanels over [start, end]
// at scrapeEvery steps, with Grafana's variables as Grafana fills them.
func evalPanels(t *testing.T, db storage.Queryable, path string, start, end time.Time) []panelData {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title       string
			FieldConfig struct{ Defaults struct{ Unit string } }
			Targets     []struct{ Expr, LegendFormat string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", rateWindow, "$__interval", "2s", "$instance", ".*", "${instance}", ".*")
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	var out []panelData
	for _, title := range dashboardPanels {
		found := false
		for _, p := range d.Panels {
			if p.Title != title {
				continue
			}
			found = true
			pd := panelData{Title: p.Title, Unit: p.FieldConfig.Defaults.Unit}
			for _, tg := range p.Targets {
				q, err := engine.NewRangeQuery(context.Background(), db, nil, vars.Replace(tg.Expr), start, end, scrapeEvery)
				if err != nil {
					t.Fatalf("panel %q: %v", title, err)
				}
				res := q.Exec(context.Background())
				if res.Err != nil {
					t.Fatalf("panel %q: %v\n%s", title, res.Err, tg.Expr)
				}
				m, err := res.Matrix()
				if err != nil {
					t.Fatalf("panel %q: %v", title, err)
				}
				for _, s := range m {
					ps := panelSeries{Legend: legend(tg.LegendFormat, s.Metric)}
					for _, f := range s.Floats {
						if math.IsNaN(f.F) || math.IsInf(f.F, 0) {
							continue
						}
						ps.X = append(ps.X, float64(f.T-start.UnixMilli())/1000)
						ps.Y = append(ps.Y, f.F)
					}
					if len(ps.X) > 0 {
						pd.Series = append(pd.Series, ps)
					}
				}
				q.Close()
			}
			out = append(out, pd)
		}
		if !found {
			t.Fatalf("the dashboard has no panel %q", title)
		}
	}
	return out
}

// legend fills a Grafana legendFormat ("{{leg}} {{direction}}") from a
// series' labels.
func legend(format string, l labels.Labels) string {
	if format == "" {
		return l.String()
	}
	l.Range(func(lb labels.Label) {
		format = strings.ReplaceAll(format, "{{"+lb.Name+"}}", lb.Value)
	})
	return strings.TrimSpace(format)
}

// panelMax is the largest value a panel shows (NaN when it shows nothing).
func panelMax(panels []panelData, title string) float64 {
	max := math.NaN()
	for _, p := range panels {
		if p.Title != title {
			continue
		}
		for _, s := range p.Series {
			for _, y := range s.Y {
				if math.IsNaN(max) || y > max {
					max = y
				}
			}
		}
	}
	return max
}

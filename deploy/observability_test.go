package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// promParser parses PromQL as Prometheus 3 does.
var promParser = parser.NewParser(parser.Options{})

// dashboardExprs returns every PromQL expression of a Grafana dashboard,
// with Grafana's variables replaced by what Grafana would send.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
			Panels  []json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$instance", ".*", "${instance}", ".*")
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s: panel %q target %d", filepath.Base(path), p.Title, i)] = vars.Replace(tg.Expr)
		}
	}
	return out
}

// ruleExprs parses a Prometheus rule file as Prometheus loads it (every
// expression, template and field checked) and returns its expressions.
func ruleExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", path, err)
	}
	out := map[string]string{}
	if groups == nil {
		return out
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("%s: rule %q is no alert", path, r.Record)
			}
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: alert %s needs a summary and a severity", path, r.Alert)
			}
			out[filepath.Base(path)+": alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// metricNames returns the metric names an expression selects.
func metricNames(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	if len(names) == 0 {
		t.Errorf("%s selects no metric: %s", where, expr)
	}
	return names
}

// TestDashboardAndAlertsNameRealMetrics parses the Grafana dashboard and
// the alert rules offline (PromQL and rule files as Prometheus parses
// them), then checks every metric they name against real scrapes: the
// all-in-one strait in trunk mode with a TLS certificate (its upstream
// never answers, so strait_upstream_up appears, at 0, and strait re-sends
// its OPTIONS pings over UDP on Timer E, which
// strait_sip_retransmissions_total counts) and a strait-dataplane node,
// both built as the Dockerfile builds them.
func TestDashboardAndAlertsNameRealMetrics(t *testing.T) {
	t.Parallel()
	exprs := dashboardExprs(t, "grafana/strait.json")
	if len(exprs) < 20 {
		t.Fatalf("the dashboard has %d queries", len(exprs))
	}
	for k, v := range ruleExprs(t, "prometheus/strait-alerts.yml") {
		exprs[k] = v
	}
	want := map[string][]string{} // metric name -> where
	for where, e := range exprs {
		for _, n := range metricNames(t, where, e) {
			want[n] = append(want[n], where)
		}
	}

	bins := buildBinaries(t)
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if out, err := exec.Command(filepath.Join(bins, "strait-dataplane"), "--gen-pki", pki).CombinedOutput(); err != nil {
		t.Fatalf("--gen-pki: %v\n%s", err, out)
	}
	// An upstream that never answers: strait pings it and reports it down.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	scraped := map[string]string{} // family -> type
	base := 20000 + 4*rand.IntN(5000)
	strait := scrapeBinary(t, filepath.Join(bins, "strait"), "strait started", "http", []string{"--http", "127.0.0.1:0", "--sip", "127.0.0.1:0",
		"--state", "memory", "--log-format", "json", "--api-token", "t", "--options-interval", "1s",
		"--upstream", "sip:" + silent.LocalAddr().String(), "--pbx-authenticates-calls",
		"--tls-cert", filepath.Join(pki, "server.pem"), "--tls-key", filepath.Join(pki, "server-key.pem"),
		"--webrtc-ports", fmt.Sprintf("%d-%d", base, base+1), "--rtp-ports", fmt.Sprintf("%d-%d", base+2, base+11)},
		"strait_upstream_up", `(?m)^strait_sip_retransmissions_total\{direction="out",message="request",method="OPTIONS"\} [1-9]`, "t")
	node := scrapeBinary(t, filepath.Join(bins, "strait-dataplane"), "metrics", "addr", []string{"--grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
		"--log-format", "json", "--grpc-cert", filepath.Join(pki, "server.pem"), "--grpc-key", filepath.Join(pki, "server-key.pem"),
		"--grpc-client-ca", filepath.Join(pki, "ca.pem"),
		"--webrtc-ports", fmt.Sprintf("%d-%d", base+12, base+13), "--rtp-ports", fmt.Sprintf("%d-%d", base+14, base+23)},
		"strait_dataplane_sessions", "", "")
	for _, s := range []map[string]string{strait, node} {
		for k, v := range s {
			scraped[k] = v
		}
	}
	for name, where := range want {
		if name == "up" {
			continue // Prometheus's own, per scrape target
		}
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suffix); ok && scraped[f] == "histogram" {
				family = f
			}
		}
		if _, ok := scraped[family]; !ok {
			t.Errorf("%s (in %s) is in no scrape of strait or strait-dataplane", name, strings.Join(where, "; "))
		}
	}
	t.Logf("%d queries name %d metrics, all scraped", len(exprs), len(want))
}

// scrapeBinary starts bin with args, finds the address its JSON log names
// under key on the line whose message is msg, scrapes /metrics there until the
// family until appears (and the scrape matches the regular expression
// line, when not empty), and returns the families by type.
func scrapeBinary(t *testing.T, bin, msg, key string, args []string, until, line, token string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, stop := startBinary(ctx, t, bin, msg, key, args)
	defer stop()
	scheme := "http"
	if strings.Contains(strings.Join(args, " "), "--tls-cert") {
		scheme = "https"
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	typeLine := regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			families := map[string]string{}
			for _, m := range typeLine.FindAllStringSubmatch(string(body), -1) {
				families[m[1]] = m[2]
			}
			if res.StatusCode == 200 && families[until] != "" && (line == "" || regexp.MustCompile(line).Match(body)) {
				return families
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no %s (or no line %s) on %s://%s/metrics: %v", filepath.Base(bin), until, line, scheme, addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startBinary starts bin with args and returns the address its JSON log
// names under key on the line whose message is msg; stop interrupts it and
// waits for it to exit (killed after 15 s).
func startBinary(ctx context.Context, t *testing.T, bin, msg, key string, args []string) (addr string, stop func()) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	addrCh := make(chan string, 1)
	var mu sync.Mutex
	var tail []string // the last lines of its log, shown when the test fails
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && !sent && m["msg"] == msg {
				if a, ok := m[key].(string); ok && strings.Contains(a, ":") {
					addrCh <- a
					sent = true
				}
			}
			mu.Lock()
			if tail = append(tail, sc.Text()); len(tail) > 40 {
				tail = tail[1:]
			}
			mu.Unlock()
		}
		close(addrCh)
	}()
	interrupt := stop
	stop = func() {
		interrupt()
		<-logged
		if t.Failed() {
			mu.Lock()
			t.Logf("%s's last log lines:\n%s", filepath.Base(bin), strings.Join(tail, "\n"))
			mu.Unlock()
		}
	}
	select {
	case a, ok := <-addrCh:
		if !ok {
			stop()
			t.Fatalf("%s exited without logging its %s address", filepath.Base(bin), key)
		}
		return a, stop
	case <-ctx.Done():
		stop()
		t.Fatalf("%s logged no %s address", filepath.Base(bin), key)
	}
	return "", stop
}

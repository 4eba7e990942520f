package harness

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strait-sbc/strait/internal/tlsconfig"
)

// StraitConfig describes one strait process. The zero value is standalone
// mode with no users.
type StraitConfig struct {
	// Upstream, if set, is trunk mode toward that PBX:
	// "sip:127.0.0.1:5070;transport=udp".
	Upstream string
	// Users are "NAME:PASSWORD" pairs for the local registrar (--user).
	Users []string
	// TLS, when set, serves HTTPS/WSS and SIP over TLS (on a free port)
	// with this certificate; the harness's own requests trust its CA.
	TLS *TLSFiles
	// SIPAddr is the SIP UDP/TCP listen address; empty picks a free port
	// (give one when a proxy in front of the PBX must know it first:
	// harness.FreeAddr).
	SIPAddr string
	// HTTPAddr is the HTTP listen address; empty picks a free port (give
	// the previous one's to a strait started again after another, so
	// that browsers reconnect to it).
	HTTPAddr string
	// RTPPorts and WebRTCPorts are --rtp-ports and --webrtc-ports; empty
	// picks free ones (give the previous one's to an all-in-one strait
	// started again after another, to carry its calls' media on).
	RTPPorts, WebRTCPorts string
	// DataDir is --data-dir, the embedded state store's directory; empty
	// is a fresh temporary one (give the same one to a strait started
	// again after another, to carry its calls on).
	DataDir string
	// Token, if set, is the API's --api-token; Do sends it.
	Token string
	// PublicIP is --public-ip, the media address strait writes in SDP;
	// empty is LoopbackIP (give another loopback address to put a proxy
	// of the test's own on the media path).
	PublicIP string
	// Args are extra flags.
	Args []string
	// Wrapper, if set, runs strait under this command line (strait's own
	// follows it): ["prlimit", "--nofile=1024", "--"].
	Wrapper []string
}

// Strait is a running strait, listening on free loopback ports.
type Strait struct {
	*Process
	// HTTPAddr serves /ws, /v1, the web phone and metrics; SIPAddr is SIP
	// over UDP and TCP; SIPTLSAddr SIP over TLS (with StraitConfig.TLS).
	HTTPAddr, SIPAddr, SIPTLSAddr string
	// RTPPorts and WebRTCPorts are the media port ranges it was given.
	RTPPorts, WebRTCPorts string
	// Token is the API token Do sends ("" for none).
	Token  string
	e      *Env
	scheme string       // http or https
	client *http.Client // trusts the test CA with TLS
}

// TLSFiles are PEM files of a certificate, its key and the CA that signed
// it.
type TLSFiles struct {
	Cert, Key, CA string
}

// PKI makes a private CA and, signed by it, a server certificate for
// hosts and a client certificate, in the test's artifacts.
func (e *Env) PKI(name string, hosts ...string) (server, client TLSFiles) {
	e.t.Helper()
	p, err := tlsconfig.GeneratePKI(e.Artifact(name), hosts)
	if err != nil {
		e.t.Fatal(err)
	}
	return TLSFiles{Cert: p.ServerCert, Key: p.ServerKey, CA: p.CA}, TLSFiles{Cert: p.ClientCert, Key: p.ClientKey, CA: p.CA}
}

// StartStrait starts strait with cfg and waits until /readyz answers 200.
// Its log (at debug level, so it carries the SIP trace) is the artifact
// strait.log. It is stopped with SIGTERM at the end of the test.
func (e *Env) StartStrait(cfg StraitConfig) *Strait {
	e.t.Helper()
	bin := os.Getenv(envStraitBin)
	// One block of ports, split: 200 for plain RTP (a port per call, and
	// the load test runs about 40 calls at once), 20 for WebRTC.
	low, _ := splitRange(PortRange(e.t, 220))
	s := &Strait{
		HTTPAddr:    cfg.HTTPAddr,
		SIPAddr:     cfg.SIPAddr,
		RTPPorts:    fmt.Sprintf("%d-%d", low, low+199),
		WebRTCPorts: fmt.Sprintf("%d-%d", low+200, low+219),
		Token:       cfg.Token,
		e:           e,
	}
	if cfg.RTPPorts != "" {
		s.RTPPorts = cfg.RTPPorts
	}
	if cfg.WebRTCPorts != "" {
		s.WebRTCPorts = cfg.WebRTCPorts
	}
	if s.SIPAddr == "" {
		s.SIPAddr = FreeAddr(e.t)
	}
	if s.HTTPAddr == "" {
		s.HTTPAddr = FreeAddr(e.t)
	}
	s.scheme, s.client = "http", http.DefaultClient
	if cfg.TLS != nil {
		pem, err := os.ReadFile(cfg.TLS.CA)
		if err != nil {
			e.t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		s.scheme = "https"
		s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		s.SIPTLSAddr = FreeAddr(e.t)
	}
	argv := []string{bin,
		"--http", s.HTTPAddr, "--sip", s.SIPAddr,
		"--media-ip", LoopbackIP, "--public-ip", cmp.Or(cfg.PublicIP, LoopbackIP),
		"--rtp-ports", s.RTPPorts, "--webrtc-ports", s.WebRTCPorts,
		"--log-level", "debug",
		// The test pages are served from other loopback ports than
		// strait's: other origins, for CORS and the /ws Origin check.
		"--cors-origin", "http://" + LoopbackIP + ":*",
		// No OPTIONS pings toward the upstream unless a test asks for them
		// (in cfg.Args, which come later and win): a sipp PBX that runs one
		// scripted call (-m 1) takes a ping for that call, and a test slowed
		// by a loaded machine reached its INVITE or REGISTER after the
		// first ping (30 s), which sipp then never answered.
		"--options-interval", "0",
	}
	if cfg.DataDir == "" {
		cfg.DataDir = e.t.TempDir()
	}
	argv = append(argv, "--data-dir", cfg.DataDir)
	if cfg.Upstream != "" {
		argv = append(argv, "--upstream", cfg.Upstream)
	}
	if cfg.Token != "" {
		argv = append(argv, "--api-token", cfg.Token)
	}
	for _, u := range cfg.Users {
		argv = append(argv, "--user", u)
	}
	if cfg.TLS != nil {
		argv = append(argv, "--tls-cert", cfg.TLS.Cert, "--tls-key", cfg.TLS.Key, "--sip-tls", s.SIPTLSAddr)
	}
	argv = append(argv, cfg.Args...)
	argv = append(append([]string(nil), cfg.Wrapper...), argv...)
	p, err := e.startProcess("strait", "", nil, 5*time.Second, argv...)
	if err != nil {
		e.t.Fatal(err)
	}
	s.Process = p
	e.Step("strait ready (GET /readyz)", 20*time.Second, func(ctx context.Context) error {
		for {
			if p.Exited() {
				return fmt.Errorf("strait exited (%v) before it was ready:\n%s", p.err, lastLines(p.Log(), 30))
			}
			if code, _ := s.Do(ctx, http.MethodGet, "/readyz", nil, nil); code == http.StatusOK {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("/readyz not 200: %w", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return s
}

// URL returns the base URL of strait's HTTP server, no trailing slash.
func (s *Strait) URL() string { return s.scheme + "://" + s.HTTPAddr }

// WS returns the SIP-over-WebSocket URL.
func (s *Strait) WS() string {
	if s.scheme == "https" {
		return "wss://" + s.HTTPAddr + "/ws"
	}
	return "ws://" + s.HTTPAddr + "/ws"
}

// SIPURI returns sip:USER@127.0.0.1:PORT for strait's SIP listener.
func (s *Strait) SIPURI(user string) string { return "sip:" + user + "@" + s.SIPAddr }

// Do makes an API request. body, if not nil, is sent as JSON; out, if not
// nil, receives the decoded JSON response of a 2xx. It returns the status
// code, and an error for transport failures, non-2xx answers (with their
// body) and undecodable responses.
func (s *Strait) Do(ctx context.Context, method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+path, r)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if res.StatusCode/100 != 2 {
		return res.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: decoding %q: %w", method, path, data, err)
		}
	}
	return res.StatusCode, nil
}

// Calls returns the calls strait lists (GET /v1/calls), accepting a bare
// JSON array or an object with a "calls" array.
func (s *Strait) Calls(ctx context.Context) ([]map[string]any, error) {
	var raw json.RawMessage
	if _, err := s.Do(ctx, http.MethodGet, "/v1/calls", nil, &raw); err != nil {
		return nil, err
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var obj struct {
		Calls []map[string]any `json:"calls"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("GET /v1/calls: neither an array nor {calls: [...]}: %s", raw)
	}
	return obj.Calls, nil
}

// Metrics is one scrape of /metrics: series ("name{labels}") to value, and
// each metric name's type.
type Metrics struct {
	Values map[string]float64
	Types  map[string]string
}

// Metrics scrapes /metrics (Prometheus text format).
func (s *Strait) Metrics(ctx context.Context) (Metrics, error) {
	return scrape(ctx, s.client, s.URL()+"/metrics", s.Token)
}

// ScrapeMetrics scrapes a Prometheus text endpoint over plain HTTP (a
// strait-dataplane's /metrics).
func ScrapeMetrics(ctx context.Context, url string) (Metrics, error) {
	return scrape(ctx, http.DefaultClient, url, "")
}

// scrape reads one Prometheus text endpoint, with token as a bearer
// token when given.
func scrape(ctx context.Context, client *http.Client, url, token string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Metrics{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return Metrics{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Metrics{}, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	m := Metrics{Values: map[string]float64{}, Types: map[string]string{}}
	return m, parseMetrics(res.Body, &m)
}

// parseMetrics reads the Prometheus text format into m.
func parseMetrics(r io.Reader, m *Metrics) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			m.Types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		// name{labels} value [timestamp]; label values may hold spaces.
		series, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else if name, after, ok := strings.Cut(line, " "); ok {
			series, rest = name, after
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			m.Values[series] = v
		}
	}
	return sc.Err()
}

// Sum adds up every series of the metric name.
func (m Metrics) Sum(name string) float64 {
	var sum float64
	for series, v := range m.Values {
		if series == name || strings.HasPrefix(series, name+"{") {
			sum += v
		}
	}
	return sum
}

// heldGauges matches the gauges that count what a call holds: dialogs,
// sessions, legs, calls, transactions, allocated ports. When strait is
// idle they must be back where they were before the calls.
var heldGauges = regexp.MustCompile(`^strait_\w*(dialog|session|leg|call|transaction|port|allocat)\w*$`)

// notHeld excludes gauges about capacity or configuration from heldGauges,
// and SIP server transactions, which outlive their calls by design: over
// UDP sipgo keeps each for 32 s after its answer (RFC 3261 Timer J) to
// absorb retransmissions. tests/attack waits for them to drain.
var notHeld = regexp.MustCompile(`(available|capacity|free|limit|max|total|config|info|start|^strait_sip_server_transactions$)`)

// Slack for counts that move on their own in an idle strait: timers and
// idle HTTP connections come and go.
const (
	goroutineSlack = 10
	fdSlack        = 5
)

// Baseline is what strait holds before a test's calls, for WaitIdle.
type Baseline struct {
	Metrics
	// MediaSockets is the number of UDP sockets bound in strait's RTP and
	// WebRTC port ranges (some may be bound for good, e.g. shared WebRTC ports).
	MediaSockets int
}

// Baseline scrapes /metrics and counts the media sockets.
func (s *Strait) Baseline(ctx context.Context) (Baseline, error) {
	m, err := s.Metrics(ctx)
	if err != nil {
		return Baseline{}, err
	}
	n, err := s.mediaSockets()
	return Baseline{Metrics: m, MediaSockets: n}, err
}

// WaitIdle waits until strait holds nothing more than at base: no call
// listed by the API, every gauge matched by heldGauges back at or below its
// baseline value, no more UDP sockets bound in its media port ranges (read
// from /proc/net/udp, so it holds whatever strait's metrics say), and
// goroutines and open files (when exported) within a small slack of the
// baseline. The error names what was left.
func (s *Strait) WaitIdle(ctx context.Context, base Baseline) error {
	var last error
	for {
		last = s.idle(ctx, base)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("strait not idle: %w", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *Strait) idle(ctx context.Context, base Baseline) error {
	calls, err := s.Calls(ctx)
	if err != nil {
		return err
	}
	if len(calls) > 0 {
		b, _ := json.Marshal(calls)
		return fmt.Errorf("%d call(s) still listed: %s", len(calls), b)
	}
	m, err := s.Metrics(ctx)
	if err != nil {
		return err
	}
	var left []string
	for _, name := range m.HeldGauges() {
		if now, was := m.Sum(name), base.Sum(name); now > was {
			left = append(left, fmt.Sprintf("%s=%g (was %g)", name, now, was))
		}
	}
	for _, c := range []struct {
		name  string
		slack float64
	}{{"go_goroutines", goroutineSlack}, {"process_open_fds", fdSlack}} {
		if now, was := m.Sum(c.name), base.Sum(c.name); now > was+c.slack {
			left = append(left, fmt.Sprintf("%s=%g (was %g)", c.name, now, was))
		}
	}
	n, err := s.mediaSockets()
	if err != nil {
		return err
	}
	if n > base.MediaSockets {
		left = append(left, fmt.Sprintf("%d UDP sockets bound in ports %s and %s (was %d)", n, s.RTPPorts, s.WebRTCPorts, base.MediaSockets))
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

// mediaSockets counts the UDP sockets bound to a port in strait's media
// ranges, in this network namespace.
func (s *Strait) mediaSockets() (int, error) {
	rl, rh := splitRange(s.RTPPorts)
	wl, wh := splitRange(s.WebRTCPorts)
	return countUDPSockets(func(port int) bool { return port >= rl && port <= rh || port >= wl && port <= wh })
}

// countUDPSockets counts the sockets in /proc/net/udp and udp6 whose local
// port satisfies match.
func countUDPSockets(match func(int) bool) (int, error) {
	n := 0
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":") // local_address ADDR:PORT, hex
			if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil && match(int(port)) {
				n++
			}
		}
	}
	return n, nil
}

// HeldGauges returns the names of the gauges WaitIdle checks, so that a
// test can insist that strait exports one for what it checks.
func (m Metrics) HeldGauges() []string {
	var out []string
	for name, typ := range m.Types {
		if typ == "gauge" && heldGauges.MatchString(name) && !notHeld.MatchString(name) {
			out = append(out, name)
		}
	}
	return out
}

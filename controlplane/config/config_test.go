package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/upstream"
	"github.com/strait-sbc/strait/internal/cliconfig"
)

func TestDefaultIsValidStandalone(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Standalone() {
		t.Fatal("default is not standalone")
	}
}

func TestFlagsEnvFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "strait.yaml")
	os.WriteFile(file, []byte("upstream: [sip:pbx.example.com:5070;transport=tcp]\nuser: [alice:a]\ncodecs: [PCMA]\nsdes: true\n"), 0o600)
	c := Default()
	env := map[string]string{"STRAIT_HTTP": "127.0.0.1:9090"}
	err := cliconfig.Load(&c, "strait", EnvPrefix, []string{"--config", file, "--media-ip", "127.0.0.2", "--user", "bob:b", "--rtp-ports", "30000-30099"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != "127.0.0.1:9090" || len(c.MediaIP) != 1 || c.MediaIP[0] != "127.0.0.2" || len(c.Users) != 1 || c.Users[0] != "bob:b" ||
		c.RTPPorts.First != 30000 || !c.SDES || c.Codecs[0] != "PCMA" {
		t.Fatalf("%+v", c)
	}
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Upstream) != 1 || c.Upstream[0] != "sip:pbx.example.com:5070;transport=tcp" {
		t.Fatalf("upstream %q", c.Upstream)
	}
	if len(p.Upstreams) != 1 || p.Upstreams[0].Host != "pbx.example.com" || len(p.Node.MediaAddrs) != 1 ||
		p.Node.MediaAddrs[0].String() != "127.0.0.2" || p.Node.RTPPorts.First != 30000 || len(p.Users) != 1 {
		t.Fatalf("parsed %+v", p)
	}
	// Repeated flags make a list, priorities and weights in the URIs.
	c = Default()
	err = cliconfig.Load(&c, "strait", EnvPrefix, []string{"--upstream", "sip:a.example.com;priority=1", "--upstream", "sip:b.example.com;priority=2",
		"--sip-trust", "10.0.0.0/24"}, func(string) string { return "" }, io.Discard)
	if err != nil || len(c.Upstream) != 2 || c.Standalone() {
		t.Fatalf("%q %v", c.Upstream, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"http":          {func(c *Config) { c.HTTP = "nope" }, "--http"},
		"upstream":      {func(c *Config) { c.Upstream = []string{"pbx:5060"} }, "--upstream"},
		"transport":     {func(c *Config) { c.Upstream = []string{"sip:pbx;transport=sctp"} }, "transport"},
		"weight":        {func(c *Config) { c.Upstream = []string{"sip:pbx", "sip:pbx2;weight=x"} }, "weight"},
		"client cert":   {func(c *Config) { c.UpstreamCert = "/nonexistent" }, "--upstream-key"},
		"upstream ca":   {func(c *Config) { c.UpstreamCA = "/nonexistent" }, "--upstream-ca"},
		"sip trust":     {func(c *Config) { c.SIPTrust = []string{"10.0.0.1"} }, "--sip-trust"},
		"dns server":    {func(c *Config) { c.DNSServer = "10.0.0.1" }, "--dns-server"},
		"media ip":      {func(c *Config) { c.MediaIP = []string{"x"} }, "--media-ip (media_ip)"},
		"unspecified":   {func(c *Config) { c.MediaIP = []string{"0.0.0.0"} }, "--public-ip"},
		"workers":       {func(c *Config) { c.Workers = -1 }, "--workers (workers)"},
		"batch":         {func(c *Config) { c.Batch = 0 }, "--batch (batch)"},
		"dscp":          {func(c *Config) { c.DSCP = 64 }, "--dscp (dscp)"},
		"buffers":       {func(c *Config) { c.SocketBuffer = -1 }, "--socket-buffer (socket_buffer)"},
		"shared ports":  {func(c *Config) { c.PlainSharedPorts.First, c.PlainSharedPorts.Last = 7, 7 }, "--plain-shared-ports"},
		"media timeout": {func(c *Config) { c.MediaTimeout = time.Millisecond }, "--media-timeout"},
		"user":          {func(c *Config) { c.Users = []string{"alice"} }, "NAME:PASSWORD"},
		"open public":   {func(c *Config) { c.HTTP = "0.0.0.0:8080" }, "needs at least one --user"},
		"tls pair":      {func(c *Config) { c.TLSCert = "/nonexistent" }, "--tls-key"},
		"dataplane":     {func(c *Config) { c.Dataplane = []string{"http://x"} }, "grpc://HOST:PORT or dns://"},
		"dns no port":   {func(c *Config) { c.Dataplane = []string{"dns://nodes.example"} }, "dns://NAME:PORT"},
		"dns port 0":    {func(c *Config) { c.Dataplane = []string{"dns://nodes.example:0"} }, "port"},
		"log level":     {func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		"codecs":        {func(c *Config) { c.Codecs = nil }, "--codecs"},
		"unknown codec": {func(c *Config) { c.Codecs = []string{"PCMU", "OPUSX"} }, `--codecs: unknown codec "OPUSX"`},
		"log format":    {func(c *Config) { c.LogFormat = "xml" }, `--log-format "xml"`},
		"rtp ports":     {func(c *Config) { c.RTPPorts.First, c.RTPPorts.Last = 5, 5 }, "--rtp-ports"},
		"twice a user":  {func(c *Config) { c.Users = []string{"a:1", "a:2"} }, "twice"},
		"api public":    {func(c *Config) { c.HTTP, c.Users = "0.0.0.0:8080", []string{"a:1"} }, "--api-token"},
		"allow dial":    {func(c *Config) { c.AllowDial = []string{"_[12"} }, "--allow-dial"},
		"deny dial":     {func(c *Config) { c.DenyDial = []string{"_["} }, "--deny-dial"},
		"call limit":    {func(c *Config) { c.MaxCallsPerUser = -1 }, "--max-calls-per-user"},
		"plain ports":   {func(c *Config) { c.PlainPorts = "both" }, "--plain-ports"},
		"app syntax":    {func(c *Config) { c.Apps = []string{"demo:_8XXX"} }, "--app: app \"demo:_8XXX\": want NAME:PATTERN:SECRET_FILE:URL"},
		"app secret":    {func(c *Config) { c.Apps = []string{"demo:_8XXX:/nonexistent:https://a.example/"} }, "--app: app \"demo\": secret"},
		"app url":       {func(c *Config) { c.Apps = []string{"demo:_8XXX:/nonexistent:ftp://a.example/"} }, "--app: app \"demo\": url"},
		"app timeout":   {func(c *Config) { c.AppAnswerTimeout = 0 }, "--app-answer-timeout"},
		"no shared":     {func(c *Config) { c.PlainPorts = "shared" }, "--plain-shared-ports"},
	} {
		c := Default()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// FuzzParseUpstream: an accepted upstream has a host and a known
// transport, and its priority and weight are in range.
func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{"sip:127.0.0.1:5070", "sip:pbx;transport=tls", "sip:[::1]:5060;transport=udp", "sips:x", "sip:", "sip:@:;",
		"sip:pbx.example.com;priority=2;weight=30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := upstream.ParseSpec(s)
		if err != nil {
			return
		}
		if u.Host == "" || u.Port < 0 || u.Port > 65535 || (u.Transport != "" && u.Transport != "UDP" && u.Transport != "TCP" && u.Transport != "TLS") ||
			u.Priority < 0 || u.Weight < 0 || u.Priority > 65535 || u.Weight > 65535 {
			t.Fatalf("ParseSpec(%q) = %+v", s, u)
		}
	})
}

// FuzzParseUsers: accepted users have a clean name and a password.
func FuzzParseUsers(f *testing.F) {
	f.Add("alice:secret")
	f.Add("a@b:c")
	f.Fuzz(func(t *testing.T, s string) {
		us, err := ParseUsers([]string{s})
		if err != nil {
			return
		}
		if us[0].Name == "" || us[0].Password == "" || strings.ContainsAny(us[0].Name, "@:;<> \t") {
			t.Fatalf("%q -> %+v", s, us)
		}
	})
}

// The all-in-one takes the dataplane's settings under the dataplane's
// names: from a file, a single media_ip as a list of one, and every
// in-process node setting reaches the parsed node configuration.
func TestNodeSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "strait.yaml")
	os.WriteFile(file, []byte("media_ip: 127.0.0.3\nworkers: 3\nbatch: 16\ndscp: 34\nsocket_buffer: 1048576\n"+
		"plain_shared_ports: 30000-30001\nmax_sessions: 7\ndtls_linger: 5s\nio: mmsg\n"), 0o600)
	c := Default()
	if err := cliconfig.Load(&c, "strait", EnvPrefix, []string{"--config", file}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	n := p.Node
	if n.MediaAddrs[0].String() != "127.0.0.3" || n.Workers != 3 || n.BatchSize != 16 || n.Socket.TOS != 34<<2 ||
		n.Socket.RecvBuffer != 1<<20 || n.Socket.SendBuffer != 1<<20 || n.PlainSharedPorts.First != 30000 ||
		n.MaxSessions != 7 || n.DTLSLinger != 5*time.Second || n.IO != "mmsg" || n.MediaTimeout != c.MediaTimeout {
		t.Fatalf("node config %+v", n)
	}
}

func TestParseDataplane(t *testing.T) {
	for in, want := range map[string]DataplaneTarget{
		"grpc://10.0.0.1:9090":                                  {Addr: "10.0.0.1:9090"},
		"grpc://[::1]:9090":                                     {Addr: "[::1]:9090"},
		"dns://strait-dataplane.strait.svc:9090":                {Addr: "strait-dataplane.strait.svc:9090", Discover: true},
		"dns://strait-dataplane.strait.svc.cluster.local:19090": {Addr: "strait-dataplane.strait.svc.cluster.local:19090", Discover: true},
	} {
		got, err := ParseDataplane(in)
		if err != nil || got != want {
			t.Errorf("ParseDataplane(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "grpc://", "dns://:9090", "dns://x:99999", "grpc://x", "tcp://x:1"} {
		if _, err := ParseDataplane(bad); err == nil {
			t.Errorf("ParseDataplane(%q) accepted", bad)
		}
	}
}

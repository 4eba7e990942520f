package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if c.HTTP != "127.0.0.1:9090" || c.MediaIP != "127.0.0.2" || len(c.Users) != 1 || c.Users[0] != "bob:b" ||
		c.RTPPorts.First != 30000 || !c.SDES || c.Codecs[0] != "PCMA" {
		t.Fatalf("%+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Upstream) != 1 || c.Upstream[0] != "sip:pbx.example.com:5070;transport=tcp" {
		t.Fatalf("upstream %q", c.Upstream)
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
		"http":         {func(c *Config) { c.HTTP = "nope" }, "--http"},
		"upstream":     {func(c *Config) { c.Upstream = []string{"pbx:5060"} }, "--upstream"},
		"transport":    {func(c *Config) { c.Upstream = []string{"sip:pbx;transport=sctp"} }, "transport"},
		"weight":       {func(c *Config) { c.Upstream = []string{"sip:pbx", "sip:pbx2;weight=x"} }, "weight"},
		"client cert":  {func(c *Config) { c.UpstreamCert = "/nonexistent" }, "--upstream-key"},
		"upstream ca":  {func(c *Config) { c.UpstreamCA = "/nonexistent" }, "--upstream-ca"},
		"sip trust":    {func(c *Config) { c.SIPTrust = []string{"10.0.0.1"} }, "--sip-trust"},
		"dns server":   {func(c *Config) { c.DNSServer = "10.0.0.1" }, "--dns-server"},
		"media ip":     {func(c *Config) { c.MediaIP = "x" }, "--media-ip"},
		"unspecified":  {func(c *Config) { c.MediaIP = "0.0.0.0" }, "--public-ip"},
		"user":         {func(c *Config) { c.Users = []string{"alice"} }, "NAME:PASSWORD"},
		"open public":  {func(c *Config) { c.HTTP = "0.0.0.0:8080" }, "needs at least one --user"},
		"tls pair":     {func(c *Config) { c.TLSCert = "/nonexistent" }, "--tls-key"},
		"dataplane":    {func(c *Config) { c.Dataplane = []string{"http://x"} }, "grpc://"},
		"log level":    {func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		"codecs":       {func(c *Config) { c.Codecs = nil }, "--codecs"},
		"rtp ports":    {func(c *Config) { c.RTPPorts.First, c.RTPPorts.Last = 5, 5 }, "--rtp-ports"},
		"twice a user": {func(c *Config) { c.Users = []string{"a:1", "a:2"} }, "twice"},
		"api public":   {func(c *Config) { c.HTTP, c.Users = "0.0.0.0:8080", []string{"a:1"} }, "--api-token"},
		"allow dial":   {func(c *Config) { c.AllowDial = []string{"_[12"} }, "--allow-dial"},
		"deny dial":    {func(c *Config) { c.DenyDial = []string{"_["} }, "--deny-dial"},
		"call limit":   {func(c *Config) { c.MaxCallsPerUser = -1 }, "--max-calls-per-user"},
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

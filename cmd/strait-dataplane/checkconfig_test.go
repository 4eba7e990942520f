package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/internal/tlsconfig"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pki, err := tlsconfig.GeneratePKI(filepath.Join(dir, "pki"), []string{"strait-dataplane"})
	if err != nil {
		t.Fatal(err)
	}
	// The shipped example, with its certificate paths pointed at files
	// that exist here (the rest as shipped).
	example := []string{filepath.Join("..", "..", "deploy", "config", "strait-dataplane.yaml"),
		"--grpc-cert", pki.ServerCert, "--grpc-key", pki.ServerKey, "--grpc-client-ca", pki.CA}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // on stdout for 0, stderr otherwise
	}{
		{"valid", []string{write("ok.yaml", "rtp_ports: 40000-40999\nworkers: 2\n")}, 0, []string{"valid", "gRPC 127.0.0.1:9090"}},
		{"shipped example", example, 0, []string{"valid", "gRPC 10.0.0.10:9090"}},
		{"example without its certificates", example[:1], 1, []string{"/etc/strait/pki/server.pem"}},
		{"unknown key names the key and the nearest", []string{write("typo.yaml", "workrs: 2\n")}, 1,
			[]string{`line 1: unknown key "workrs"`, `did you mean "workers"`}},
		{"bad value names key and line", []string{write("val.yaml", "batch: 64\ndscp: lots\n")}, 1, []string{"line 2: dscp:"}},
		{"media settings checked", []string{write("ports.yaml", "rtp_ports: 9-1\n")}, 1, []string{"port range"}},
		{"public gRPC without mutual TLS", []string{write("grpc.yaml", "grpc: 0.0.0.0:9090\n")}, 1, []string{"not a loopback address"}},
		{"log format checked", []string{write("log.yaml", "log_format: xml\n")}, 1, []string{"--log-format"}},
		{"flags apply over the file", []string{write("flag.yaml", "batch: 64\n"), "--io", "carrier-pigeon"}, 1, []string{"--io (io)"}},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, []string{"no such file"}},
		{"no file", nil, 2, []string{"usage: strait-dataplane check-config FILE"}},
	} {
		var out, errw bytes.Buffer
		code := checkConfig(tc.args, noEnv, &out, &errw)
		got := errw.String()
		if tc.code == 0 {
			got = out.String()
		}
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d; stdout %q stderr %q", tc.name, code, tc.code, out.String(), errw.String())
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
	}
}

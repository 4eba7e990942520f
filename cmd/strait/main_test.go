package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // on stdout for 0, stderr otherwise
	}{
		{"valid", []string{write("ok.yaml", "http: 127.0.0.1:8080\ncodecs: [opus, PCMU]\n")}, 0, []string{"valid", "standalone mode"}},
		{"unknown key names the key and the nearest", []string{write("typo.yaml", "http: 127.0.0.1:8080\nhtp: 0.0.0.0:80\n")}, 1,
			[]string{`line 2: unknown key "htp"`, `did you mean "http"`}},
		{"flag spelling in the file", []string{write("dash.yaml", "log-level: debug\n")}, 1, []string{`unknown key "log-level"`, `"log_level"`}},
		{"bad value names key and line", []string{write("val.yaml", "workers: 4\nring_timeout: 5\n")}, 1, []string{"line 2: ring_timeout:", "duration"}},
		{"every bad key at once", []string{write("many.yaml", "htp: x\nbatch: lots\nsdes: maybe\n")}, 1, []string{`"htp"`, "batch:", "sdes:"}},
		{"key given twice", []string{write("twice.yaml", "sip: 127.0.0.1:5060\nsip: 127.0.0.1:5070\n")}, 1, []string{`key "sip" given twice (first on line 1)`}},
		{"unknown codec from the file", []string{write("codec.yaml", "codecs: [PCMU, OPUSX]\n")}, 1, []string{"--codecs", `"OPUSX"`}},
		{"unknown codec from a flag", []string{write("empty.yaml", ""), "--codecs", "OPUSX"}, 1, []string{"--codecs", `"OPUSX"`}},
		{"flags apply over the file", []string{write("open.yaml", "http: 0.0.0.0:8080\n"), "--api-token", "t", "--user", "a:b"}, 0, []string{"valid"}},
		{"validation names the flag", []string{write("open2.yaml", "http: 0.0.0.0:8080\n")}, 1, []string{"--api-token"}},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, []string{"no such file"}},
		{"no file", nil, 2, []string{"usage: strait check-config FILE"}},
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

// The annotated example is what the systemd unit reads (once installed
// where the unit's comment says), and it is valid as shipped (its file
// paths pointed at files that exist) and with every optional line
// uncommented.
func TestExampleConfig(t *testing.T) {
	example := filepath.Join("..", "..", "deploy", "config", "strait.yaml")
	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "strait.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=\S*strait --config (\S+)`).FindSubmatch(unit)
	if m == nil || string(m[1]) != "/etc/strait/strait.yaml" || !bytes.Contains(unit, []byte("cp ../config/strait.yaml /etc/strait/")) {
		t.Fatalf("the unit does not read /etc/strait/strait.yaml installed from deploy/config/strait.yaml: %s", m)
	}
	// The certificate and key paths must exist for validation to pass:
	// flags point them at files here (flags win over the file).
	dir := t.TempDir()
	var paths []string
	for _, f := range []string{"tls-cert", "tls-key", "upstream-ca", "upstream-cert", "upstream-key", "dataplane-cert", "dataplane-key", "dataplane-ca"} {
		p := filepath.Join(dir, f)
		os.WriteFile(p, []byte("x"), 0o600)
		paths = append(paths, "--"+f, p)
	}
	var out, errw bytes.Buffer
	if code := checkConfig(append([]string{example}, paths[:4]...), noEnv, &out, &errw); code != 0 {
		t.Fatalf("the example as shipped: exit %d: %s", code, errw.String())
	}
	t.Log(strings.TrimSpace(out.String()))

	body, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// "# key: value" lines (not prose) become settings; a key shown twice
	// (user in standalone, upstream in trunk) keeps the first.
	setting := regexp.MustCompile(`^# ([a-z_0-9]+): (.*)$`)
	var lines []string
	seen := map[string]bool{}
	uncommented := 0
	for _, l := range strings.Split(string(body), "\n") {
		if k := setting.FindStringSubmatch(l); k != nil {
			if seen[k[1]] {
				continue
			}
			l = k[1] + ": " + k[2]
			uncommented++
		}
		if k, _, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		lines = append(lines, l)
	}
	full := filepath.Join(dir, "full.yaml")
	os.WriteFile(full, []byte(strings.Join(lines, "\n")), 0o600)
	out.Reset()
	errw.Reset()
	// Remote nodes replace the in-process one; users need no upstream,
	// but both may be given for validation.
	if code := checkConfig(append([]string{full}, paths...), noEnv, &out, &errw); code != 0 {
		t.Fatalf("the example with its %d optional lines: exit %d: %s", uncommented, code, errw.String())
	}
	if uncommented < 15 {
		t.Errorf("only %d optional settings shown", uncommented)
	}
}

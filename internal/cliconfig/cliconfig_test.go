package cliconfig

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type portRange struct{ lo, hi int }

func (p *portRange) UnmarshalText(b []byte) error {
	lo, hi, ok := strings.Cut(string(b), "-")
	if !ok {
		return errors.New("want LO-HI")
	}
	p.lo, p.hi = len(lo), len(hi) // enough to tell values apart
	return nil
}

type cfg struct {
	HTTP    string        `yaml:"http" flag:"http" usage:"listen address"`
	Users   []string      `yaml:"user" flag:"user" usage:"NAME:PASSWORD"`
	Workers int           `yaml:"workers" flag:"workers"`
	Debug   bool          `yaml:"debug" flag:"debug"`
	Timeout time.Duration `yaml:"timeout" flag:"timeout"`
	Ports   portRange     `yaml:"ports" flag:"ports"`
	Ignored string
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("http: file:1\nuser: [a:1, b:2]\nworkers: 3\ntimeout: 5s\nports: 1-22\n"), 0o600)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want cfg
	}{
		{"defaults", nil, nil, cfg{HTTP: "def", Workers: 1}},
		{"file", nil, []string{"--config", file}, cfg{HTTP: "file:1", Users: []string{"a:1", "b:2"}, Workers: 3, Timeout: 5 * time.Second, Ports: portRange{1, 2}}},
		{"file from env", map[string]string{"X_CONFIG": file}, nil, cfg{HTTP: "file:1", Users: []string{"a:1", "b:2"}, Workers: 3, Timeout: 5 * time.Second, Ports: portRange{1, 2}}},
		{"env over file", map[string]string{"X_HTTP": "env:1", "X_USER": "c:3, d:4"}, []string{"-config=" + file}, cfg{HTTP: "env:1", Users: []string{"c:3", "d:4"}, Workers: 3, Timeout: 5 * time.Second, Ports: portRange{1, 2}}},
		{"flags over all", map[string]string{"X_HTTP": "env:1"}, []string{"--config", file, "--http", "flag:1", "--user", "e:5", "--user", "f:6", "--debug", "--ports", "333-4"}, cfg{HTTP: "flag:1", Users: []string{"e:5", "f:6"}, Workers: 3, Debug: true, Timeout: 5 * time.Second, Ports: portRange{3, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg{HTTP: "def", Workers: 1}
			if err := Load(&c, "x", "X", tt.args, env(tt.env), io.Discard); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("got %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("htpt: typo\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown yaml key", nil, []string{"--config", bad}, "htpt"},
		{"missing file", nil, []string{"--config", filepath.Join(dir, "nope")}, "no such file"},
		{"bad int flag", nil, []string{"--workers", "many"}, "workers"},
		{"bad env", map[string]string{"X_TIMEOUT": "soon"}, nil, "X_TIMEOUT"},
		{"unknown flag", nil, []string{"--nope"}, "nope"},
		{"stray argument", nil, []string{"stray"}, "stray"},
		{"bad text value", nil, []string{"--ports", "x"}, "LO-HI"},
	} {
		var c cfg
		err := Load(&c, "x", "X", tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	var c cfg
	if err := Load(&c, "x", "X", []string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestTagMismatchIsAnError(t *testing.T) {
	var c struct {
		A string `yaml:"b" flag:"a"`
	}
	if err := Load(&c, "x", "X", nil, env(nil), io.Discard); err == nil {
		t.Fatal("mismatched yaml/flag tags accepted")
	}
}

type shared struct {
	Media []string `yaml:"media_ip" flag:"media-ip"`
	Batch int      `yaml:"batch" flag:"batch"`
}

type outer struct {
	shared `yaml:",inline"`
	GRPC   string `yaml:"grpc" flag:"grpc"`
}

// An embedded struct's fields are the outer's, from every source, and a
// list key takes a single value in the file.
func TestInlineAndListOfOne(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("media_ip: 10.0.0.1\nbatch: 8\ngrpc: a:1\n"), 0o600)
	var c outer
	if err := Load(&c, "x", "X", []string{"--config", file}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := (outer{shared{[]string{"10.0.0.1"}, 8}, "a:1"}); !reflect.DeepEqual(c, want) {
		t.Fatalf("file: %+v, want %+v", c, want)
	}
	if err := Load(&c, "x", "X", []string{"--batch", "16", "--media-ip", "::1"}, env(map[string]string{"X_GRPC": "b:2"}), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := (outer{shared{[]string{"::1"}, 16}, "b:2"}); !reflect.DeepEqual(c, want) {
		t.Fatalf("flags and env: %+v, want %+v", c, want)
	}
	os.WriteFile(file, []byte("batch: 8\nbtach: 9\n"), 0o600)
	if err := Load(&c, "x", "X", []string{"--config", file}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "btach") {
		t.Fatalf("misspelt key: %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--version=true"},
		{"--http", "x:1", "--version"}, {"--workers", "nonsense", "--version"}, {"--config", "/nonexistent", "--version"}} {
		c := cfg{}
		if err := Load(&c, "x", "X", args, env(nil), io.Discard); !errors.Is(err, ErrVersion) {
			t.Errorf("%v: %v, want ErrVersion", args, err)
		}
	}
	c := cfg{}
	if err := Load(&c, "x", "X", []string{"--version=false"}, env(nil), io.Discard); err != nil {
		t.Errorf("--version=false: %v", err)
	}
}

type grouped struct {
	shared  `yaml:",inline"`
	HTTP    string        `yaml:"http" flag:"http" group:"Listeners" usage:"listen address"`
	SIP     string        `yaml:"sip" flag:"sip" usage:"SIP address"`
	Timeout time.Duration `yaml:"timeout" flag:"timeout" group:"Timers" usage:"how long"`
}

// --help lists each flag under its group, the outer struct's groups
// first, with its environment variable and YAML key.
func TestHelpGroupsEnvAndYAML(t *testing.T) {
	var out strings.Builder
	c := grouped{HTTP: "127.0.0.1:1", Timeout: time.Second}
	if err := Load(&c, "x", "X", []string{"--help"}, env(nil), &out, Synopsis("x [flags]", "x check FILE")); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{"usage: x [flags]\n       x check FILE\n", "\nListeners:\n  --http VALUE\n        listen address (default 127.0.0.1:1)\n        env X_HTTP, yaml http\n",
		"  --sip VALUE\n        SIP address\n        env X_SIP, yaml sip\n", "\nTimers:\n  --timeout DURATION\n", "env X_MEDIA_IP, yaml media_ip", "--version", "env X_CONFIG"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Index(help, "Timers:") > strings.Index(help, "--media-ip") {
		t.Errorf("the embedded struct's flags come before the outer struct's groups:\n%s", help)
	}
}

// A file's errors name the file, the line and the key, all at once.
func TestFileErrorsNameKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("htp: x\nworkers: many\ntimeout: 5\nuser: {a: b}\ndebug: yes\nports: 1-2\nports: 3-4\n"), 0o600)
	var c cfg
	err := Load(&c, "x", "X", []string{"--config", file}, env(nil), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{file, `line 1: unknown key "htp" (did you mean "http"?)`, `line 2: workers: "many": want a whole number`,
		`line 3: timeout: "5": want a duration`, "line 4: user: want a list of values, not a mapping", `line 7: key "ports" given twice (first on line 6)`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "debug") || strings.Contains(err.Error(), "type ") {
		t.Errorf("%v: yes is a YAML boolean, and no Go type names belong in it", err)
	}
}

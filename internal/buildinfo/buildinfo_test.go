package buildinfo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestString(t *testing.T) {
	in := Info{Version: "v1.2.3", Revision: "abc", Modified: true, Time: "2026-12-07T00:00:00Z", GoVersion: "go1.x"}
	s := in.String("strait")
	for _, want := range []string{"strait v1.2.3", "revision abc (modified)", "go1.x", runtime.GOOS} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if r := Read(); r.GoVersion != runtime.Version() || r.Version == "" {
		t.Errorf("Read() = %+v", r)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector("strait"))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "strait_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, %v; want one strait_build_info series", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("value %v, want 1", m.GetGauge().GetValue())
	}
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["binary"] != "strait" || labels["goversion"] != runtime.Version() || labels["version"] == "" {
		t.Errorf("labels %v", labels)
	}
}

// Every binary under cmd/, built as an operator builds it, answers
// --version with one line naming itself and its build, exits 0 and
// starts nothing.
func TestEveryBinaryVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		name := d.Name()
		t.Run(name, func(t *testing.T) {
			exe := filepath.Join(bin, name)
			// As a release is built: stamped with the VCS revision when
			// the tree and git allow it (this machine's GOFLAGS may say
			// -buildvcs=false; the last flag wins).
			build := exec.Command("go", "build", "-buildvcs=auto", "-o", exe, "./cmd/"+name)
			build.Dir = root
			if out, err := build.CombinedOutput(); err != nil {
				t.Logf("go build -buildvcs=auto: %v: %s; building without VCS stamps", err, out)
				build = exec.Command("go", "build", "-buildvcs=false", "-o", exe, "./cmd/"+name)
				build.Dir = root
				if out, err := build.CombinedOutput(); err != nil {
					t.Fatalf("go build: %v\n%s", err, out)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, exe, "--version").Output()
			if err != nil {
				t.Fatalf("%s --version: %v", name, err)
			}
			line := strings.TrimSpace(string(out))
			if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, name+" ") ||
				!strings.Contains(line, "revision ") || !strings.Contains(line, runtime.Version()) {
				t.Fatalf("%s --version printed %q", name, line)
			}
			// The revision printed is the one the toolchain stamped.
			meta, err := exec.Command("go", "version", "-m", exe).Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(meta), "\n") {
				if f := strings.Fields(l); len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
					if rev := strings.TrimPrefix(f[1], "vcs.revision="); !strings.Contains(line, "revision "+rev) {
						t.Errorf("%s --version %q lacks the stamped revision %s", name, line, rev)
					}
				}
			}
			t.Log(line)
		})
	}
}

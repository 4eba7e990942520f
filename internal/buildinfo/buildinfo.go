// Package buildinfo says which build of Strait is running, from what the Go
// toolchain stamps into every binary (runtime/debug.ReadBuildInfo): the
// module version, the VCS revision and time, whether the tree had local
// changes, and the Go version. Every binary prints it for --version and
// exports it as the strait_build_info gauge, so that an operator can tell
// which build a node runs from its metrics alone.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Info is what the toolchain recorded about this build. Fields it did not
// record (a `go run`, a build outside a VCS checkout) are "unknown".
type Info struct {
	// Version is the main module's version: a tag, a pseudo-version, or
	// "(devel)" for a build from a checkout.
	Version string
	// Revision is the VCS commit; Modified is true when the tree had
	// uncommitted changes.
	Revision string
	Modified bool
	// Time is the commit time (RFC 3339).
	Time string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns this binary's build information.
func Read() Info {
	in := Info{Version: "unknown", Revision: "unknown", Time: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	if bi.Main.Version != "" {
		in.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one line --version prints, e.g.
// "strait (devel) revision 1a2b3c4 (modified) 2026-12-07T07:00:00Z go1.26.8 linux/amd64".
func (in Info) String(binary string) string {
	rev := in.Revision
	if in.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("%s %s revision %s %s %s %s/%s", binary, in.Version, rev, in.Time, in.GoVersion,
		runtime.GOOS, runtime.GOARCH)
}

// Collector returns the strait_build_info gauge: always 1, with the build
// as labels (one series per process, so the labels are bounded).
func Collector(binary string) prometheus.Collector {
	in := Read()
	rev := in.Revision
	if in.Modified {
		rev += "-modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_build_info",
		Help: "Always 1; the labels say which build runs (binary, module version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{"binary": binary, "version": in.Version, "revision": rev,
			"goversion": in.GoVersion}})
	g.Set(1)
	return g
}

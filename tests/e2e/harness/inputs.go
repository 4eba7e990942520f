package harness

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// declareInputs tells go test's result cache what these tests depend on
// besides the test binary: strait's sources (the binary Main builds), the
// sipp scenarios and pages, and the programs they run. go test caches a
// result keyed by the files a test opened, so opening them is the
// declaration: change one, and the next go test runs the tests again
// instead of printing "(cached)" for a strait it never ran.
var declareInputs = sync.OnceFunc(func() {
	root := RepoRoot()
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".xml", ".html", ".js", ".mjs", ".css", ".mod", ".sum":
		default:
			if name != "package-lock.json" {
				return nil
			}
		}
		if f, err := os.Open(path); err == nil {
			f.Close()
		}
		return nil
	})
	for _, prog := range []string{"sipp", "node", "chromium"} {
		if path, err := exec.LookPath(prog); err == nil {
			if f, err := os.Open(path); err == nil {
				f.Close()
			}
		}
	}
})

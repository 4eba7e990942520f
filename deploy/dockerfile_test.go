package deploy

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// stage is one FROM ... block of a Dockerfile.
type stage struct {
	from, name string
	args       map[string]string // ARG defaults seen in the stage (and before the first FROM)
	lines      []string          // instructions after FROM, continuation lines joined
}

// parseDockerfile splits a Dockerfile into stages. It knows what this
// repository's Dockerfile uses: comments, line continuations, ARG, FROM.
func parseDockerfile(t *testing.T, path string) []*stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	global := map[string]string{}
	var stages []*stage
	var cur *stage
	var pending string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			fields := strings.Fields(rest)
			cur = &stage{from: expand(fields[0], global), args: map[string]string{}}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				cur.name = fields[2]
			}
			stages = append(stages, cur)
			continue
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			if cur == nil {
				global[name] = def
			} else {
				cur.args[name] = def
			}
		}
		if cur != nil {
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// expand substitutes ${NAME} and $NAME from args, leaving unknown ones.
func expand(s string, args map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := args[name]; ok {
			return v
		}
		return m
	})
}

// outDir is where the Dockerfile's build stage writes the binaries.
const outDir = "/out/"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  string
)

// buildBinaries runs the build stage's go build command (the RUN line that
// calls it) in the repository root, writing into a temporary directory
// instead of /out/, once per test binary. It returns that directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		stages := parseDockerfile(t, "../Dockerfile")
		var build *stage
		for _, s := range stages {
			if s.name == "build" {
				build = s
			}
		}
		if build == nil {
			buildErr = "Dockerfile has no stage named build"
			return
		}
		var cmd string
		for _, l := range build.lines {
			if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
				cmd = expand(strings.TrimPrefix(l, "RUN "), build.args)
			}
		}
		if cmd == "" || !strings.Contains(cmd, "-o "+outDir) {
			buildErr = "the build stage has no RUN go build ... -o " + outDir + " line: " + cmd
			return
		}
		dir, err := os.MkdirTemp("", "strait-image-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		buildDir = dir
		cmd = strings.ReplaceAll(cmd, "-o "+outDir, "-o "+dir+"/")
		c := exec.Command("sh", "-c", cmd)
		c.Dir = ".."
		if out, err := c.CombinedOutput(); err != nil {
			buildErr = "go build as the Dockerfile runs it: " + err.Error() + "\n" + string(out)
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return buildDir
}

// TestDockerfile checks the image's recipe without a container runtime (no
// image can be pulled here): the build stage's command works as a plain go
// build and makes static binaries, and the final stage is distroless or
// scratch, runs as a non-root user and holds both binaries.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, "../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stages", len(stages))
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static or scratch", final.from)
	}
	var user, entry string
	copied := map[string]bool{}
	for _, l := range final.lines {
		switch {
		case strings.HasPrefix(l, "USER "):
			user = strings.TrimPrefix(l, "USER ")
		case strings.HasPrefix(l, "ENTRYPOINT "):
			entry = l
		case strings.HasPrefix(l, "COPY --from=build "):
			for _, f := range strings.Fields(l)[2:] {
				copied[filepath.Base(f)] = true
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: want a non-root uid", user)
	}
	if !copied["strait"] || !copied["strait-dataplane"] {
		t.Errorf("final stage copies %v: want strait and strait-dataplane", copied)
	}
	if !strings.Contains(entry, "/usr/local/bin/strait\"") {
		t.Errorf("ENTRYPOINT %q: want the control plane", entry)
	}

	dir := buildBinaries(t)
	for _, name := range []string{"strait", "strait-dataplane"} {
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: not static (distroless/static has no libc)", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s keeps its symbol table: the image's build uses -s -w", name)
		}
		f.Close()
		out, err := exec.Command(filepath.Join(dir, name), "-help").CombinedOutput()
		if err != nil {
			t.Errorf("%s -help: %v\n%s", name, err, out)
		}
	}
}

// Package cliconfig loads a binary's configuration the way operators expect:
// built-in defaults, then a YAML file, then environment variables, then
// command-line flags, each overriding the one before. One struct describes
// it all: every field tagged `flag:"name"` is settable by the YAML key of
// the same name with underscores, by the flag --name and by the variable
// PREFIX_NAME (upper case, dashes as underscores). A field's `group` tag
// starts a heading of --help that the fields after it share.
//
// Supported field types: string, bool, int, uint, time.Duration, []string
// (a repeatable flag; comma-separated in the environment; a YAML list, or
// one YAML value for a list of one), and anything implementing
// encoding.TextUnmarshaler (and TextMarshaler, for defaults in -help). An
// embedded struct tagged `yaml:",inline"` contributes its fields as if
// they were the outer struct's: two binaries can share a block of
// settings under the same names.
package cliconfig

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ConfigFlag is the flag naming the YAML file.
const ConfigFlag = "config"

// VersionFlag is the flag that asks a binary for its version.
const VersionFlag = "version"

// ErrVersion is what Load returns for --version: the caller prints its
// build (package buildinfo) to stdout and exits 0, having started nothing.
var ErrVersion = errors.New("version requested")

// Load fills cfg, a pointer to a struct already holding the defaults, from
// the file named by --config (or PREFIX_CONFIG), the environment and args.
// It returns flag.ErrHelp after printing usage for -h/-help.
func Load(cfg any, name, prefix string, args []string, env func(string) string, usage io.Writer, opts ...Option) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return errors.New("cliconfig: cfg must be a pointer to a struct")
	}
	fields, err := collect(v.Elem())
	if err != nil {
		return err
	}
	if env == nil {
		env = os.Getenv
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usage)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fs.Usage = func() { printUsage(usage, name, prefix, o.synopsis, fields) }
	configPath := fs.String(ConfigFlag, env(envName(prefix, ConfigFlag)), "YAML configuration `file` (flags and environment override it)")
	version := fs.Bool(VersionFlag, false, "print the build (version, VCS revision, Go version) and exit")
	seen := map[string]bool{}
	for _, f := range fields {
		set := func(s string) error {
			if f.isList() && !seen[f.name] {
				f.value.SetLen(0) // flags replace a list from the file or environment
			}
			seen[f.name] = true
			return f.set(s)
		}
		if f.value.Kind() == reflect.Bool {
			fs.BoolFunc(f.name, f.usage+f.defaultText(), set)
		} else {
			fs.Func(f.name, f.usage+f.defaultText(), set)
		}
	}
	// --version answers whatever else is wrong with the configuration.
	if findFlag(args, VersionFlag) != "" {
		return ErrVersion
	}
	// The file comes first, so the config flag must be known before the
	// other flags are applied: parse once to find it, on a scratch copy.
	if p := findConfigFlag(args); p != "" {
		*configPath = p
	}
	if *configPath != "" {
		if err := loadFile(*configPath, fields); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if s := env(envName(prefix, f.name)); s != "" {
			if f.isList() {
				f.value.SetLen(0)
				for _, part := range strings.Split(s, ",") {
					if part = strings.TrimSpace(part); part != "" {
						if err := f.set(part); err != nil {
							return fmt.Errorf("%s: %w", envName(prefix, f.name), err)
						}
					}
				}
				continue
			}
			if err := f.set(s); err != nil {
				return fmt.Errorf("%s: %w", envName(prefix, f.name), err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		return ErrVersion
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// findFlag reports how a boolean flag is given in args ("" when it is
// not, or is given false), without parsing anything else.
func findFlag(args []string, name string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		n := strings.TrimLeft(a, "-")
		if d := len(a) - len(n); d < 1 || d > 2 {
			continue
		}
		if n == name || n == name+"=true" || n == name+"=1" {
			return a
		}
	}
	return ""
}

// findConfigFlag scans args for --config without applying anything else.
func findConfigFlag(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name := strings.TrimLeft(a, "-")
		if len(a)-len(name) < 1 || len(a)-len(name) > 2 {
			continue
		}
		if v, ok := strings.CutPrefix(name, ConfigFlag+"="); ok {
			return v
		}
		if name == ConfigFlag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// loadFile applies the YAML file at path, key by key, with the parsers
// flags use: an error names the file, the line and the key (and, for a
// key nobody knows, the nearest one that exists), every bad key at once.
func loadFile(path string, fields []*field) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	m := doc.Content[0]
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: want keys and values (key: value), not a %s", path, m.Line, kindName(m))
	}
	byKey := map[string]*field{}
	var keys []string
	for _, f := range fields {
		byKey[f.key()] = f
		keys = append(keys, f.key())
	}
	var errs []error
	first := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		f := byKey[k.Value]
		if f == nil {
			errs = append(errs, fmt.Errorf("line %d: unknown key %q%s", k.Line, k.Value, suggest(k.Value, keys)))
			continue
		}
		if line, ok := first[k.Value]; ok {
			errs = append(errs, fmt.Errorf("line %d: key %q given twice (first on line %d)", k.Line, k.Value, line))
			continue
		}
		first[k.Value] = k.Line
		if err := f.decode(v); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s: %w", v.Line, k.Value, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config %s:\n%w", path, errors.Join(errs...))
	}
	return nil
}

// decode sets the field from a YAML value: a scalar for a single value
// (null for the zero value), a sequence of scalars (or one scalar) for a
// list.
func (f *field) decode(v *yaml.Node) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	null := v.Kind == yaml.ScalarNode && v.Tag == "!!null"
	if f.isList() {
		f.value.SetLen(0)
		switch {
		case null:
			return nil
		case v.Kind == yaml.ScalarNode:
			return f.set(v.Value) // a list of one
		case v.Kind != yaml.SequenceNode:
			return fmt.Errorf("want a list of values, not a %s", kindName(v))
		}
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a single value in the list, not a %s", e.Line, kindName(e))
			}
			if err := f.set(e.Value); err != nil {
				return err
			}
		}
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a single value, not a %s", kindName(v))
	}
	if null {
		f.value.SetZero()
		return nil
	}
	return f.set(v.Value)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// suggest names the known key nearest to an unknown one, when one is near
// (a typo, or the flag's spelling with dashes).
func suggest(unknown string, known []string) string {
	best, bestD := "", 3
	u := strings.ReplaceAll(strings.ToLower(unknown), "-", "_")
	for _, k := range known {
		if d := editDistance(u, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (see --help for the keys)"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func envName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

type field struct {
	name, usage string
	// group is the heading --help lists the field under; depth counts
	// the embedded structs it comes from (the outer struct's groups are
	// listed first).
	group string
	depth int
	value reflect.Value
}

// key is the field's YAML key: its flag with underscores.
func (f *field) key() string { return strings.ReplaceAll(f.name, "-", "_") }

func collect(v reflect.Value) ([]*field, error) {
	var out []*field
	t := v.Type()
	group := ""
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if g := sf.Tag.Get("group"); g != "" {
			group = g
		}
		name := sf.Tag.Get("flag")
		if name == "" && sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("yaml") == ",inline" {
			inner, err := collect(v.Field(i))
			if err != nil {
				return nil, err
			}
			for _, f := range inner {
				f.depth++
			}
			out = append(out, inner...)
			continue
		}
		if name == "" {
			continue
		}
		f := &field{name: name, usage: sf.Tag.Get("usage"), group: group, value: v.Field(i)}
		if !f.supported() {
			return nil, fmt.Errorf("cliconfig: field %s has unsupported type %s", sf.Name, sf.Type)
		}
		if want := strings.ReplaceAll(name, "-", "_"); sf.Tag.Get("yaml") != want && sf.Tag.Get("yaml") != want+",omitempty" {
			return nil, fmt.Errorf("cliconfig: field %s: yaml tag must be %q to match its flag", sf.Name, want)
		}
		out = append(out, f)
	}
	return out, nil
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
	marshalType   = reflect.TypeFor[encoding.TextMarshaler]()
)

func (f *field) isList() bool {
	return f.value.Kind() == reflect.Slice && f.value.Type().Elem().Kind() == reflect.String
}

func (f *field) supported() bool {
	if reflect.PointerTo(f.value.Type()).Implements(unmarshalType) {
		return true
	}
	switch f.value.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Uint:
		return true
	case reflect.Int64:
		return f.value.Type() == durationType
	}
	return f.isList()
}

func (f *field) set(s string) error {
	if u, ok := f.value.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch f.value.Kind() {
	case reflect.String:
		f.value.SetString(s)
	case reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		f.value.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q: want a whole number", s)
		}
		f.value.SetInt(int64(n))
	case reflect.Uint:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q: want a whole number, 0 or more", s)
		}
		f.value.SetUint(n)
	case reflect.Int64: // time.Duration
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q: want a duration such as 500ms, 30s or 2m", s)
		}
		f.value.SetInt(int64(d))
	case reflect.Slice:
		f.value.Set(reflect.Append(f.value, reflect.ValueOf(s)))
	}
	return nil
}

func (f *field) defaultText() string {
	v := f.value
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Type().Implements(marshalType) {
		if b, err := m.MarshalText(); err == nil && len(b) > 0 {
			return fmt.Sprintf(" (default %s)", b)
		}
		return ""
	}
	if v.IsZero() {
		return ""
	}
	switch v.Kind() {
	case reflect.Slice:
		return fmt.Sprintf(" (default %s; repeatable)", strings.Join(v.Interface().([]string), ","))
	case reflect.Int64:
		return fmt.Sprintf(" (default %s)", time.Duration(v.Int()))
	}
	return fmt.Sprintf(" (default %v)", v.Interface())
}

package cliconfig

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Option changes how Load presents a binary.
type Option func(*options)

type options struct {
	synopsis []string
}

// Synopsis gives the usage lines --help prints first, e.g.
// "strait check-config FILE [flags]"; the default is "NAME [flags]".
func Synopsis(lines ...string) Option {
	return func(o *options) { o.synopsis = append(o.synopsis, lines...) }
}

// printUsage writes --help: the flags under their groups' headings, each
// with its value's kind, its default, its environment variable and its
// YAML key, so that an operator can write any of the three from it.
func printUsage(w io.Writer, name, prefix string, synopsis []string, fields []*field) {
	if len(synopsis) == 0 {
		synopsis = []string{name + " [flags]"}
	}
	for i, l := range synopsis {
		lead := "usage: "
		if i > 0 {
			lead = "       "
		}
		fmt.Fprintln(w, lead+l)
	}
	fmt.Fprintf(w, "\nEvery setting is a flag, an environment variable and a key of the YAML file (--config);\n"+
		"flags override the environment, which overrides the file, which overrides the defaults.\n"+
		"Lists: repeat the flag, separate with commas in the environment, a YAML list in the file.\n")
	fmt.Fprintf(w, "\nGeneral:\n")
	fmt.Fprintf(w, "  --%s FILE\n        YAML configuration file\n        env %s\n", ConfigFlag, envName(prefix, ConfigFlag))
	fmt.Fprintf(w, "  --%s\n        print the build (version, VCS revision, Go version) and exit\n", VersionFlag)
	var order []string
	byGroup := map[string][]*field{}
	for _, f := range fields {
		g := f.group
		if g == "" {
			g = "Other"
		}
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], f)
	}
	slices.SortStableFunc(order, func(a, b string) int { return byGroup[a][0].depth - byGroup[b][0].depth })
	for _, g := range order {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, f := range byGroup[g] {
			fmt.Fprintf(w, "  --%s%s\n", f.name, f.placeholder())
			if f.usage != "" {
				fmt.Fprintf(w, "        %s%s\n", f.usage, f.defaultText())
			} else if d := f.defaultText(); d != "" {
				fmt.Fprintf(w, "       %s\n", d)
			}
			fmt.Fprintf(w, "        env %s, yaml %s\n", envName(prefix, f.name), f.key())
		}
	}
}

// placeholder names the kind of value a flag takes (nothing for a bool).
func (f *field) placeholder() string {
	switch {
	case f.value.Kind() == reflect.Bool:
		return ""
	case f.value.Type() == durationType:
		return " DURATION"
	case f.isList(), f.value.Kind() == reflect.String:
		return " VALUE"
	case f.value.Kind() == reflect.Int, f.value.Kind() == reflect.Uint:
		return " N"
	}
	return " VALUE"
}

// parseBool is strconv.ParseBool plus YAML's yes/no and on/off.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q: want true or false", s)
	}
	return b, nil
}

// Package logging builds the slog loggers every Strait binary writes with:
// text (logfmt) or JSON lines (--log-format), and one set of attribute
// keys, each at most once per line.
//
// The keys that identify what a line is about are the constants below, used
// by the control plane and the dataplane alike, so that one call can be
// followed across both (grep call=ID, or select on .call in JSON).
// Libraries log through the same handler (sipgo adds its own "caller"
// key); a key given twice, by a parent logger's With and again on the
// line, is written once, with the innermost value.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
)

// The attribute keys that identify what a log line is about.
const (
	// KeyCall is Strait's call id (the id of the HTTP API and the CDR).
	KeyCall = "call"
	// KeyLeg is a call leg's index (0 the caller's side, 1 the callee's).
	KeyLeg = "leg"
	// KeySIPCallID is a SIP dialog's Call-ID header.
	KeySIPCallID = "sip_call_id"
	// KeyNode is a dataplane node's name.
	KeyNode = "node"
	// KeySession is a dataplane session id.
	KeySession = "session"
	// KeyComponent names the part of the program that logs.
	KeyComponent = "component"
)

// Formats are the values --log-format takes.
var Formats = []string{"text", "json"}

// ParseLevel parses debug, info, warn or error (any case).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// CheckFormat reports whether format is one --log-format takes.
func CheckFormat(format string) error {
	switch format {
	case "text", "json":
		return nil
	}
	return fmt.Errorf("%q: want text or json", format)
}

// New returns a logger writing to w in format ("text" or "json") at the
// level level holds (nil: info). Repeated keys are written once.
func New(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	if level == nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(Dedup(h)), nil
}

// Dedup wraps h so that each top-level key appears at most once per line:
// attributes added with With are held back and merged with the record's,
// a later value replacing an earlier one in place. Attributes inside a
// group (WithGroup) are passed through as they are.
// Dedup of a handler Dedup returned is that handler.
func Dedup(h slog.Handler) slog.Handler {
	if d, ok := h.(*dedup); ok {
		return d
	}
	return &dedup{inner: h}
}

// dedup is immutable: With* return new values (pre is a cache, filled
// once, of a value derived from the frozen fields).
type dedup struct {
	inner slog.Handler
	attrs []slog.Attr // held back from inner, merged per record

	// pre is inner.WithAttrs(attrs), made at the first line written (a
	// call's logger that writes nothing at the configured level costs no
	// formatting): slog's own handlers format With attributes once, so a
	// line whose keys repeat none of attrs goes through it as it is,
	// without the merge's copies (the per-call log path, issue 10).
	pre atomic.Pointer[slog.Handler]
}

func (d *dedup) Enabled(ctx context.Context, l slog.Level) bool { return d.inner.Enabled(ctx, l) }

func (d *dedup) WithAttrs(as []slog.Attr) slog.Handler {
	return &dedup{inner: d.inner, attrs: merge(append([]slog.Attr(nil), d.attrs...), as)}
}

func (d *dedup) WithGroup(name string) slog.Handler {
	if name == "" {
		return d
	}
	// Attributes after a group belong to it: flush the held ones first.
	return d.inner.WithAttrs(d.attrs).WithGroup(name)
}

func (d *dedup) Handle(ctx context.Context, r slog.Record) error {
	if d.distinct(r) {
		return d.preformatted().Handle(ctx, r)
	}
	all := make([]slog.Attr, 0, len(d.attrs)+r.NumAttrs())
	all = append(all, d.attrs...)
	var rec []slog.Attr
	r.Attrs(func(a slog.Attr) bool { rec = append(rec, a); return true })
	all = merge(all, rec)
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(all...)
	return d.inner.Handle(ctx, out)
}

// distinct reports whether r's attributes repeat no key, their own or one
// held back: the record then needs no merge.
func (d *dedup) distinct(r slog.Record) bool {
	const most = 16 // a record with more goes through the merge
	var keys [most]string
	n := 0
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if n == most || a.Key == "" {
			// An empty key may be an inlined group, whose keys the
			// merge looks into.
			ok = false
			return false
		}
		for _, k := range keys[:n] {
			if k == a.Key {
				ok = false
				return false
			}
		}
		for i := range d.attrs {
			if d.attrs[i].Key == a.Key {
				ok = false
				return false
			}
		}
		keys[n] = a.Key
		n++
		return true
	})
	return ok
}

// preformatted is inner with the held attributes applied, made once.
func (d *dedup) preformatted() slog.Handler {
	if len(d.attrs) == 0 {
		return d.inner
	}
	if h := d.pre.Load(); h != nil {
		return *h
	}
	h := d.inner.WithAttrs(d.attrs)
	d.pre.CompareAndSwap(nil, &h)
	return *d.pre.Load()
}

// merge appends add to base, replacing in place any attribute of base (or
// earlier in add) with the same key.
func merge(base, add []slog.Attr) []slog.Attr {
	for _, a := range add {
		if a.Equal(slog.Attr{}) {
			continue
		}
		replaced := false
		for i := range base {
			if base[i].Key == a.Key {
				base[i], replaced = a, true
				break
			}
		}
		if !replaced {
			base = append(base, a)
		}
	}
	return base
}

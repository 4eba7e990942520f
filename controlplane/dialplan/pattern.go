package dialplan

import (
	"fmt"
	"strings"
)

// maxLen bounds patterns and destinations: no dialled number or user name
// is longer (E.164 numbers have at most 15 digits; SIP user names in
// practice a few dozen characters).
const maxLen = 128

// Pattern is a compiled destination pattern (see the package doc). The
// zero value matches nothing. A Pattern is immutable and safe for
// concurrent use.
type Pattern struct {
	src   string
	elems []class
	// tail is what may follow the elements: tailNone (nothing),
	// tailOneOrMore ('.') or tailAny ('!').
	tail tail
}

type tail uint8

const (
	tailNone tail = iota
	tailOneOrMore
	tailAny
)

// class is a set of bytes, one bit each.
type class [4]uint64

func (c *class) add(b byte)      { c[b>>6] |= 1 << (b & 63) }
func (c *class) has(b byte) bool { return c[b>>6]&(1<<(b&63)) != 0 }
func (c *class) addRange(lo, hi byte) {
	for b := int(lo); b <= int(hi); b++ {
		c.add(byte(b))
	}
}

// addFold adds b, and its other case for a letter.
func (c *class) addFold(b byte) {
	c.add(lower(b))
	if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' {
		c.add(lower(b) - 'a' + 'A')
	}
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// literalOK reports whether b may appear in a pattern or a normalised
// destination: printable ASCII other than the space.
func literalOK(b byte) bool { return b > ' ' && b < 0x7f }

// ParsePattern compiles a pattern.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("dialplan: empty pattern")
	}
	if len(s) > maxLen {
		return Pattern{}, fmt.Errorf("dialplan: pattern %.20q... longer than %d characters", s, maxLen)
	}
	p := Pattern{src: s}
	body, wild := strings.CutPrefix(s, "_")
	if !wild {
		for i := 0; i < len(s); i++ {
			if !literalOK(s[i]) {
				return Pattern{}, fmt.Errorf("dialplan: pattern %q: character %q not allowed", s, s[i])
			}
			var c class
			c.addFold(s[i])
			p.elems = append(p.elems, c)
		}
		return p, nil
	}
	if body == "" {
		return Pattern{}, fmt.Errorf("dialplan: pattern %q: nothing after '_'", s)
	}
	for i := 0; i < len(body); i++ {
		b := body[i]
		if p.tail != tailNone {
			return Pattern{}, fmt.Errorf("dialplan: pattern %q: '.' and '!' must come last", s)
		}
		var c class
		switch b {
		case '-':
			continue
		case '.':
			p.tail = tailOneOrMore
			continue
		case '!':
			p.tail = tailAny
			continue
		case 'X', 'x':
			c.addRange('0', '9')
		case 'Z', 'z':
			c.addRange('1', '9')
		case 'N', 'n':
			c.addRange('2', '9')
		case '[':
			end := strings.IndexByte(body[i+1:], ']')
			if end < 0 {
				return Pattern{}, fmt.Errorf("dialplan: pattern %q: '[' without ']'", s)
			}
			set := body[i+1 : i+1+end]
			if set == "" {
				return Pattern{}, fmt.Errorf("dialplan: pattern %q: empty class []", s)
			}
			for j := 0; j < len(set); j++ {
				if !literalOK(set[j]) || set[j] == '[' {
					return Pattern{}, fmt.Errorf("dialplan: pattern %q: character %q not allowed in a class", s, set[j])
				}
				if j+2 < len(set) && set[j+1] == '-' {
					lo, hi := lower(set[j]), lower(set[j+2])
					if lo > hi {
						return Pattern{}, fmt.Errorf("dialplan: pattern %q: range %c-%c is backwards", s, set[j], set[j+2])
					}
					for r := int(lo); r <= int(hi); r++ {
						c.addFold(byte(r))
					}
					j += 2
					continue
				}
				c.addFold(set[j])
			}
			i += end + 1
		default:
			if !literalOK(b) || b == ']' {
				return Pattern{}, fmt.Errorf("dialplan: pattern %q: character %q not allowed", s, b)
			}
			c.addFold(b)
		}
		p.elems = append(p.elems, c)
	}
	if len(p.elems) == 0 && p.tail == tailNone {
		return Pattern{}, fmt.Errorf("dialplan: pattern %q matches nothing", s)
	}
	return p, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// Match reports whether a normalised destination (see [Normalize])
// matches. It never allocates.
func (p Pattern) Match(dest string) bool {
	if p.src == "" || len(dest) < len(p.elems) {
		return false
	}
	for i := range p.elems {
		if !p.elems[i].has(dest[i]) {
			return false
		}
	}
	rest := len(dest) - len(p.elems)
	switch p.tail {
	case tailOneOrMore:
		return rest >= 1
	case tailAny:
		return true
	}
	return rest == 0
}

// Normalize returns the form of a destination every rule is matched
// against (see the package doc), or an error for one no rule should see:
// empty, too long, a bad percent escape, or a control character.
func Normalize(dest string) (string, error) {
	if dest == "" {
		return "", fmt.Errorf("dialplan: empty destination")
	}
	if len(dest) > 3*maxLen {
		return "", fmt.Errorf("dialplan: destination longer than %d characters", maxLen)
	}
	var b strings.Builder
	b.Grow(len(dest))
	for i := 0; i < len(dest); i++ {
		c := dest[i]
		if c == '%' {
			if i+2 >= len(dest) || !isHex(dest[i+1]) || !isHex(dest[i+2]) {
				return "", fmt.Errorf("dialplan: destination %q: bad percent escape", dest)
			}
			c = unhex(dest[i+1])<<4 | unhex(dest[i+2])
			i += 2
		}
		if c == ';' {
			break // parameters: ";phone-context=...", ";isub=..."
		}
		if c != ' ' && !literalOK(c) {
			return "", fmt.Errorf("dialplan: destination %q: control or non-ASCII character", dest)
		}
		b.WriteByte(lower(c))
	}
	out := b.String()
	if dialString(out) {
		out = strings.Map(func(r rune) rune {
			switch r {
			case '-', '.', '(', ')', ' ':
				return -1
			}
			return r
		}, out)
	}
	if out == "" || strings.Contains(out, " ") {
		return "", fmt.Errorf("dialplan: destination %q is empty or has spaces", dest)
	}
	if len(out) > maxLen {
		return "", fmt.Errorf("dialplan: destination longer than %d characters", maxLen)
	}
	return out, nil
}

// dialString reports whether s is made only of dial characters and visual
// separators (a telephone number as a person writes it).
func dialString(s string) bool {
	digits := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = true
		case c == '+' || c == '*' || c == '#' || c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return false
		}
	}
	return digits
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

package rtpengine

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// The ng protocol carries bencoded dictionaries (BEP 3): strings as
// "len:bytes", integers as "i<n>e", lists "l...e", dictionaries "d...e"
// with keys sorted.

// Dict is a bencoded dictionary; values are string, []byte, int, []any or
// Dict.
type Dict = map[string]any

// encode appends the bencoding of v to b.
func encode(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case int:
		b = append(b, 'i')
		b = strconv.AppendInt(b, int64(v), 10)
		return append(b, 'e'), nil
	case []string:
		b = append(b, 'l')
		for _, s := range v {
			b, _ = encode(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, x := range v {
			var err error
			if b, err = encode(b, x); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	case Dict:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = encode(b, k)
			var err error
			if b, err = encode(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	}
	return nil, fmt.Errorf("bencode: cannot encode %T", v)
}

var errBencode = errors.New("bencode: malformed input")

// decode reads one value from b and returns it with the rest of b.
// Strings decode as string.
func decode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errBencode
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[1:end]))
		if err != nil {
			return nil, nil, errBencode
		}
		return n, b[end+1:], nil
	case c == 'l':
		var out []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := decode(b)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, v)
			b = rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return out, b[1:], nil
	case c == 'd':
		out := Dict{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := decode(b)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, errBencode
			}
			v, rest, err := decode(rest)
			if err != nil {
				return nil, nil, err
			}
			out[ks] = v
			b = rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return out, b[1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || colon+1+n > len(b) {
			return nil, nil, errBencode
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	}
	return nil, nil, errBencode
}

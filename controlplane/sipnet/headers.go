package sipnet

import (
	"iter"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// HeaderList is what requests and responses share for reading headers.
type HeaderList interface {
	Headers() []sip.Header
}

// Header returns m's first header named name, or nil. Header field names
// are compared without regard to case (RFC 3261 section 7.3.1); a compact
// form ("k" for Supported) is a name of its own, as with sipgo.
//
// Unlike sipgo's GetHeader it allocates nothing: sipgo lowers each
// header's name to compare it, one allocation per header whose name is
// not among its well-known ones (Allow, Supported, User-Agent, ...), on
// every lookup, about 50 allocations per call at 1 000 calls/s (issue 10).
func Header(m HeaderList, name string) sip.Header {
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			return h
		}
	}
	return nil
}

// HeadersNamed yields m's headers named name (any case), in order, as
// Header finds them.
func HeadersNamed(m HeaderList, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		for _, h := range m.Headers() {
			if strings.EqualFold(h.Name(), name) && !yield(h) {
				return
			}
		}
	}
}

package b2bua

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// allowsInfo reports whether a message's Allow header lists INFO.
func allowsInfo(m headers) bool {
	for h := range sipnet.HeadersNamed(m, "Allow") {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), "INFO") {
				return true
			}
		}
	}
	return false
}

// sdpBody parses a message's SDP body, nil when there is none.
func sdpBody(body []byte, contentType string) (*sdp.Description, error) {
	if len(body) == 0 {
		return nil, nil
	}
	if ct := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])); ct != "" && ct != "application/sdp" {
		return nil, sipError(415, "", errors.New("body is "+ct+", not application/sdp"))
	}
	return sdp.Parse(body)
}

// headers is what requests and responses share for header access.
type headers interface {
	Headers() []sip.Header // read with sipnet.Header and HeadersNamed
	AppendHeader(h sip.Header)
}

func contentType(m headers) string {
	if h := sipnet.Header(m, "Content-Type"); h != nil {
		return h.Value()
	}
	return ""
}

func copyHeaders(from, to headers, names ...string) {
	for _, n := range names {
		for h := range sipnet.HeadersNamed(from, n) {
			to.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
}

// supportsTimer reports whether a message lists "timer" in Supported or
// Require.
func supportsTimer(m headers) bool {
	for _, n := range []string{"Supported", "Require", "k"} {
		for h := range sipnet.HeadersNamed(m, n) {
			for t := range strings.SplitSeq(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), "timer") {
					return true
				}
			}
		}
	}
	return false
}

// sanitize makes text safe inside a quoted header value.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// maxForwards is what Strait sends on: one less than received.
func maxForwards(req *sip.Request) *sip.MaxForwardsHeader {
	n := sip.MaxForwardsHeader(70)
	if req == nil {
		return &n
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() > 0 {
		n = sip.MaxForwardsHeader(mf.Val() - 1)
	}
	return &n
}

// Package upstream holds Strait's upstreams in trunk mode: the PBXs and
// trunks it relays browsers to. Each is configured as a SIP URI with a
// priority and a weight; a name is resolved as RFC 3263 says (NAPTR, then
// SRV, then A/AAAA) in the background, never on the path of a request;
// each resolved target is pinged with OPTIONS by its owner and marked up
// or down here; new calls get the targets in the order to try them
// (priority, then weighted at random, healthy first); and a request from
// the SIP side is recognised as an upstream's by its address, port and
// transport, or by its TLS identity.
package upstream

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Transports as Strait names them (sipnet's names).
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
)

// Default priority and weight of an upstream that names none. Lower
// priorities are tried first; among equal priorities, weights share the
// new calls (as SRV records do, RFC 2782).
const (
	DefaultPriority = 1
	DefaultWeight   = 1
)

// Spec is one configured upstream:
// sip:HOST[:PORT][;transport=udp|tcp|tls][;priority=N][;weight=N].
type Spec struct {
	// Host is the URI's host: an IP address or a name. Toward the
	// upstream it is the domain in Request-URIs, From and To, and the
	// name its TLS certificate must carry.
	Host string
	// Port is the URI's port, 0 when none was given (RFC 3263: a name
	// without a port is looked up with NAPTR and SRV).
	Port int
	// Transport is UDP, TCP or TLS; "" when the URI names none (RFC 3263:
	// NAPTR decides, else UDP).
	Transport string
	// Priority (lower first) and Weight (share among equal priorities).
	Priority, Weight int
	// URI is the configured text, for logs and labels.
	URI string
}

// ParseSpec parses one --upstream.
func ParseSpec(s string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("upstream %q: %s (want sip:HOST[:PORT][;transport=udp|tcp|tls][;priority=N][;weight=N])", s, why)
	}
	if !strings.HasPrefix(strings.ToLower(s), "sip:") {
		return bad("not a sip: URI")
	}
	var uri sip.Uri
	if err := sip.ParseUri(s, &uri); err != nil || uri.Host == "" {
		return bad("not a SIP URI with a host")
	}
	if uri.User != "" {
		return bad("an upstream URI names a host, not a user")
	}
	sp := Spec{Host: strings.Trim(uri.Host, "[]"), Port: uri.Port, Priority: DefaultPriority, Weight: DefaultWeight, URI: s}
	if uri.Port < 0 || uri.Port > 65535 {
		return bad("port out of range")
	}
	if uri.UriParams != nil {
		if t, ok := uri.UriParams.Get("transport"); ok {
			switch strings.ToLower(t) {
			case "udp", "tcp", "tls":
				sp.Transport = strings.ToUpper(t)
			default:
				return bad("transport " + strconv.Quote(t) + " is not udp, tcp or tls")
			}
		}
		for _, p := range []struct {
			name string
			dst  *int
			min  int
		}{{"priority", &sp.Priority, 0}, {"weight", &sp.Weight, 0}} {
			if v, ok := uri.UriParams.Get(p.name); ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < p.min || n > 65535 {
					return bad(p.name + " " + strconv.Quote(v) + " is not a number from 0 to 65535")
				}
				*p.dst = n
			}
		}
	}
	if _, err := netip.ParseAddr(sp.Host); err != nil && !validName(sp.Host) {
		return bad("host " + strconv.Quote(sp.Host) + " is neither an IP address nor a DNS name")
	}
	return sp, nil
}

// validName reports whether s is a DNS name (letters, digits, hyphens and
// dots; labels of 1 to 63 characters).
func validName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// IP returns the host as an address when it is one.
func (s Spec) IP() (netip.Addr, bool) {
	a, err := netip.ParseAddr(s.Host)
	return a.Unmap(), err == nil
}

// DefaultPort is a transport's port when a URI gives none (RFC 3261
// section 19.1.2).
func DefaultPort(transport string) int {
	if strings.EqualFold(transport, TLS) {
		return 5061
	}
	return 5060
}

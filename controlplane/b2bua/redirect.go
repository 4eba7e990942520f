package b2bua

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// Redirects (3xx), per direction:
//
//   - A call from a browser or the API toward the upstreams: Strait
//     follows the redirect itself (browsers do not: JsSIP and SIP.js take
//     3xx as a failure), at most maxRedirects times, never back to a
//     target it already tried, and only to a Contact whose host is one of
//     the upstreams and whose user the caller's dial plan allows: a PBX's
//     Contact is no licence to send a browser's call anywhere. The new
//     INVITE continues the dialog (same Call-ID and From tag, the next
//     CSeq, RFC 3261 section 8.1.3.4). A redirect it does not follow ends
//     the call with 480.
//   - A call from the upstream or a SIP device: the 3xx goes back to the
//     caller, which can follow it, with its Contacts reduced to their user
//     parts at the caller's side's host (the upstream's, or Strait's), so
//     that nothing of the callee's addressing leaks.
//   - Anything else (a call from a browser to a browser) ends with 480.

// maxRedirects bounds the redirects one call follows.
const maxRedirects = 5

// maxPassedContacts bounds the Contacts a 3xx passes back.
const maxPassedContacts = 5

// contactsByQ returns a response's Contact URIs, highest q first (RFC
// 3261 section 8.1.3.4), at most n.
func contactsByQ(res *sip.Response, n int) []sip.Uri {
	type qc struct {
		q   float64
		uri sip.Uri
	}
	var all []qc
	for h := range sipnet.HeadersNamed(res, "Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || ch.Address.Wildcard || ch.Address.Host == "" {
			continue
		}
		q := 1.0
		if v, ok := ch.Params.Get("q"); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		all = append(all, qc{q: q, uri: *ch.Address.Clone()})
		if len(all) == 4*n {
			break // a response's Contact list is not ours to walk without end
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].q > all[j].q })
	out := make([]sip.Uri, 0, n)
	for _, c := range all {
		if len(out) == n {
			break
		}
		out = append(out, c.uri)
	}
	return out
}

// redirectKey names a redirect target for the loop check.
func redirectKey(user, host string) string {
	return strings.ToLower(user) + "@" + strings.ToLower(strings.Trim(host, "[]"))
}

// followRedirect picks where a 3xx toward the upstreams sends the call:
// the first Contact, by q, at an upstream's host, for a user the caller
// may dial, not tried before. It returns the target and user to aim the
// dialog at.
func (c *Call) followRedirect(res *sip.Response, visited map[string]bool) (upstream.Target, string, bool) {
	e := c.e
	if e.cfg.Upstreams == nil || len(visited) > maxRedirects {
		return upstream.Target{}, "", false
	}
	for _, u := range contactsByQ(res, maxRedirects) {
		if u.User == "" || !validUser(u.User) || visited[redirectKey(u.User, u.Host)] {
			continue
		}
		if g := e.cfg.Guard; g != nil {
			norm, err := dialplan.Normalize(u.User)
			if err != nil {
				continue
			}
			if ok, _ := g.Plan().Allowed(c.caller, norm); !ok {
				c.log.Info("redirect not followed: the dial plan refuses it", "to", u.User)
				continue
			}
		}
		host := strings.Trim(u.Host, "[]")
		ip, ipErr := netip.ParseAddr(host)
		isIP := ipErr == nil
		for _, t := range e.cfg.Upstreams.Order() {
			if strings.EqualFold(t.Host(), host) || isIP && t.Addr.Addr() == ip.Unmap() {
				visited[redirectKey(u.User, u.Host)] = true
				return t, u.User, true
			}
		}
		c.log.Info("redirect not followed: not an upstream", "host", host)
	}
	return upstream.Target{}, "", false
}

// validUser reports whether a user part is safe to put in a URI Strait
// builds (no separators or spaces; bounded).
func validUser(s string) bool {
	return s != "" && len(s) <= 128 && !strings.ContainsAny(s, " \t\r\n<>\"@:;,?")
}

// passedContacts are the Contacts of a 3xx passed back to a SIP caller:
// each Contact's user at the caller's side's host.
func (c *Call) passedContacts(res *sip.Response) []sip.Header {
	host, port := c.e.st.Host(), 0
	if a := c.legs[0]; a.d != nil && c.e.trunk() {
		a.d.mu.Lock()
		up := a.d.up
		a.d.mu.Unlock()
		if up == nil {
			if ts := c.e.cfg.Upstreams.Order(); len(ts) > 0 {
				up = &ts[0]
			}
		}
		if up != nil {
			host, port = up.Host(), up.URIPort()
		}
	}
	var out []sip.Header
	for _, u := range contactsByQ(res, maxPassedContacts) {
		if !validUser(u.User) {
			continue
		}
		out = append(out, &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.User, Host: host, Port: port}, Params: sip.NewParams()})
	}
	return out
}

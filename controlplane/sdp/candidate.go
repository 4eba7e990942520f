package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Candidate is an ICE candidate from a=candidate (RFC 8839 section 5.1).
type Candidate struct {
	// Foundation groups candidates of the same type, base and protocol.
	Foundation string
	// Component is 1 for RTP, 2 for RTCP without rtcp-mux.
	Component int
	// Transport is "udp" or "tcp", lower case.
	Transport string
	// Priority is the candidate priority (RFC 8445 section 5.1.2).
	Priority uint32
	// Address is an IP literal, or an mDNS name ending in ".local" that
	// browsers use to hide local addresses (see MDNS).
	Address string
	// Port is the candidate's port.
	Port int
	// Type is "host", "srflx", "prflx" or "relay".
	Type string
	// RelatedAddress and RelatedPort are raddr and rport, when given.
	RelatedAddress string
	RelatedPort    int
	// TCPType is tcptype for TCP candidates (RFC 6544): "active",
	// "passive" or "so".
	TCPType string
}

// MDNS reports whether the address is an mDNS name (draft-ietf-mmusic-mdns-
// ice-candidates), which Strait cannot resolve: such a candidate is kept for
// the record but unusable.
func (c Candidate) MDNS() bool { return strings.HasSuffix(strings.ToLower(c.Address), ".local") }

// Usable reports whether Strait could send to this candidate: UDP, with an
// IP literal. TCP candidates are kept but ignored by a UDP-only ICE-lite
// agent.
func (c Candidate) Usable() bool {
	if !strings.EqualFold(c.Transport, "udp") || c.Port <= 0 || c.Port > 65535 {
		return false
	}
	_, err := netip.ParseAddr(c.Address)
	return err == nil
}

// String returns the attribute value (without "candidate:").
func (c Candidate) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d %s %d %s %d typ %s", c.Foundation, c.Component, c.Transport,
		c.Priority, c.Address, c.Port, c.Type)
	if c.RelatedAddress != "" {
		fmt.Fprintf(&b, " raddr %s rport %d", c.RelatedAddress, c.RelatedPort)
	}
	if c.TCPType != "" {
		fmt.Fprintf(&b, " tcptype %s", c.TCPType)
	}
	return b.String()
}

// parseCandidate reads the value of a=candidate:
//
//	foundation component transport priority address port typ type [ext...]
func parseCandidate(v string) (Candidate, error) {
	f := strings.Fields(v)
	if len(f) < 8 || f[6] != "typ" {
		return Candidate{}, fmt.Errorf("candidate %q: too few fields", v)
	}
	comp, err := strconv.ParseUint(f[1], 10, 8)
	if err != nil || comp == 0 {
		return Candidate{}, fmt.Errorf("candidate %q: bad component", v)
	}
	prio, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: bad priority", v)
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: bad port", v)
	}
	c := Candidate{
		Foundation: f[0],
		Component:  int(comp),
		Transport:  strings.ToLower(f[2]),
		Priority:   uint32(prio),
		Address:    f[4],
		Port:       int(port),
		Type:       f[7],
	}
	// Extensions come in name/value pairs.
	for i := 8; i+1 < len(f); i += 2 {
		switch f[i] {
		case "raddr":
			c.RelatedAddress = f[i+1]
		case "rport":
			if p, err := strconv.ParseUint(f[i+1], 10, 16); err == nil {
				c.RelatedPort = int(p)
			}
		case "tcptype":
			c.TCPType = f[i+1]
		}
	}
	return c, nil
}

// ICE candidate priority (RFC 8445 section 5.1.2.1):
//
//	priority = 2^24 * type preference + 2^8 * local preference + (256 - component)
const (
	// hostTypePreference is the type preference RFC 8445 section
	// 5.1.2.2 recommends for host candidates.
	hostTypePreference = 126
	// maxLocalPreference goes to the first address; later ones count down
	// so that every candidate of the leg has a distinct priority, as
	// section 5.1.2.1 requires of a multihomed agent.
	maxLocalPreference = 65535
	// rtpComponent is the only component: Strait's WebRTC legs always
	// multiplex RTCP (RFC 8843 requires rtcp-mux with BUNDLE).
	rtpComponent = 1
)

// hostCandidates returns one UDP host candidate per local address, in order
// of preference.
func hostCandidates(addrs []netip.AddrPort) []Candidate {
	out := make([]Candidate, 0, len(addrs))
	for i, a := range addrs {
		localPref := uint32(maxLocalPreference - i)
		out = append(out, Candidate{
			Foundation: strconv.Itoa(i + 1),
			Component:  rtpComponent,
			Transport:  "udp",
			Priority:   hostTypePreference<<24 | localPref<<8 | (256 - rtpComponent),
			Address:    a.Addr().Unmap().String(),
			Port:       int(a.Port()),
			Type:       "host",
		})
	}
	return out
}

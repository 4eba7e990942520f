package sdp

import (
	"net/netip"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// Marshal writes the description as SDP text with CRLF line ends. It
// writes what the model holds, nothing more: attributes [Parse] does not
// model (extmap, ssrc-group, b=, ...) are not in a parsed Description and
// so never written. A rejected section (port 0, not bundle-only) gets no
// direction attribute.
func (d *Description) Marshal() ([]byte, error) {
	if d.Origin.Address == "" {
		return nil, invalidInput("origin has no address")
	}
	username := d.Origin.Username
	if username == "" {
		username = "-"
	}
	sd := psdp.SessionDescription{
		Origin: psdp.Origin{
			Username:       username,
			SessionID:      d.Origin.SessionID,
			SessionVersion: d.Origin.Version,
			NetworkType:    "IN",
			AddressType:    addressType(d.Origin.Address),
			UnicastAddress: d.Origin.Address,
		},
		SessionName:      "-",
		TimeDescriptions: []psdp.TimeDescription{{}},
	}
	if d.Address != "" {
		sd.ConnectionInformation = connection(d.Address)
	}
	attrs := attributes{}
	if d.ICELite {
		attrs.flag("ice-lite")
	}
	if len(d.Bundle) > 0 {
		attrs.add("group", "BUNDLE "+strings.Join(d.Bundle, " "))
	}
	attrs.ice(d.ICE)
	if !d.Fingerprint.IsZero() {
		attrs.add("fingerprint", d.Fingerprint.Algorithm+" "+d.Fingerprint.Value)
	}
	if d.Setup != SetupNone {
		attrs.add("setup", d.Setup.String())
	}
	sd.Attributes = attrs
	for i := range d.Media {
		sd.MediaDescriptions = append(sd.MediaDescriptions, marshalMedia(&d.Media[i], d))
	}
	return sd.Marshal()
}

// marshalMedia converts one section. Attributes that repeat the session
// level's are left out.
func marshalMedia(m *Media, d *Description) *psdp.MediaDescription {
	formats := m.Formats
	if len(m.Codecs) > 0 {
		formats = make([]string, len(m.Codecs))
		for i, c := range m.Codecs {
			formats[i] = strconv.Itoa(int(c.PayloadType))
		}
	}
	if len(formats) == 0 {
		formats = []string{"0"} // RFC 8866 section 5.14 wants at least one.
	}
	proto := m.Proto
	if proto == "" {
		proto = "RTP/AVP"
	}
	md := &psdp.MediaDescription{
		MediaName: psdp.MediaName{
			Media:   m.Type,
			Port:    psdp.RangedPort{Value: m.Port},
			Protos:  strings.Split(proto, "/"),
			Formats: formats,
		},
	}
	if md.MediaName.Media == "" {
		md.MediaName.Media = m.Kind.String()
	}
	if m.Address != "" && m.Address != d.Address {
		md.ConnectionInformation = connection(m.Address)
	}
	a := attributes{}
	if m.RTCPPort != 0 {
		v := strconv.Itoa(m.RTCPPort)
		if m.RTCPAddress != "" {
			v += " IN " + addressType(m.RTCPAddress) + " " + m.RTCPAddress
		}
		a.add("rtcp", v)
	}
	for _, c := range m.Candidates {
		a.add("candidate", c.String())
	}
	if m.EndOfCandidates {
		a.flag("end-of-candidates")
	}
	if m.ICE.Ufrag != d.ICE.Ufrag || m.ICE.Pwd != d.ICE.Pwd {
		a.ice(ICE{Ufrag: m.ICE.Ufrag, Pwd: m.ICE.Pwd})
	}
	if len(m.ICE.Options) > 0 && strings.Join(m.ICE.Options, " ") != strings.Join(d.ICE.Options, " ") {
		a.add("ice-options", strings.Join(m.ICE.Options, " "))
	}
	if !m.Fingerprint.IsZero() && !m.Fingerprint.Equal(d.Fingerprint) {
		a.add("fingerprint", m.Fingerprint.Algorithm+" "+m.Fingerprint.Value)
	}
	if m.Setup != SetupNone && m.Setup != d.Setup {
		a.add("setup", m.Setup.String())
	}
	if m.Mid != "" {
		a.add("mid", m.Mid)
	}
	if m.BundleOnly {
		a.flag("bundle-only")
	}
	if !m.Rejected() {
		a.flag(m.Direction.String())
	}
	if m.MSID != "" {
		a.add("msid", m.MSID)
	}
	if m.RTCPMux {
		a.flag("rtcp-mux")
	}
	if m.RTCPRsize {
		a.flag("rtcp-rsize")
	}
	for _, c := range m.Crypto {
		a.add("crypto", c.String())
	}
	for _, c := range m.Codecs {
		a.add("rtpmap", strconv.Itoa(int(c.PayloadType))+" "+c.String())
		for _, fb := range c.RTCPFeedback {
			a.add("rtcp-fb", strconv.Itoa(int(c.PayloadType))+" "+fb)
		}
		if c.Fmtp != "" {
			a.add("fmtp", strconv.Itoa(int(c.PayloadType))+" "+c.Fmtp)
		}
	}
	if m.Ptime > 0 {
		a.add("ptime", strconv.Itoa(m.Ptime))
	}
	if m.MaxPtime > 0 {
		a.add("maxptime", strconv.Itoa(m.MaxPtime))
	}
	for _, s := range m.SSRCs {
		if s.CNAME != "" {
			a.add("ssrc", strconv.FormatUint(uint64(s.ID), 10)+" cname:"+s.CNAME)
		}
	}
	md.Attributes = a
	return md
}

// attributes accumulates a= lines.
type attributes []psdp.Attribute

func (a *attributes) add(key, value string) { *a = append(*a, psdp.NewAttribute(key, value)) }

func (a *attributes) flag(key string) { *a = append(*a, psdp.NewPropertyAttribute(key)) }

func (a *attributes) ice(ice ICE) {
	if ice.Ufrag != "" {
		a.add("ice-ufrag", ice.Ufrag)
	}
	if ice.Pwd != "" {
		a.add("ice-pwd", ice.Pwd)
	}
	if len(ice.Options) > 0 {
		a.add("ice-options", strings.Join(ice.Options, " "))
	}
}

func connection(addr string) *psdp.ConnectionInformation {
	return &psdp.ConnectionInformation{
		NetworkType: "IN",
		AddressType: addressType(addr),
		Address:     &psdp.Address{Address: addr},
	}
}

// addressType returns "IP6" for an IPv6 literal and "IP4" otherwise
// (including host names, which RFC 8866 allows under either).
func addressType(addr string) string {
	if ip, err := netip.ParseAddr(addr); err == nil && ip.Is6() && !ip.Is4In6() {
		return "IP6"
	}
	return "IP4"
}

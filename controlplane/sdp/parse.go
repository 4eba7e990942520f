package sdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// maxDescriptionSize bounds the input Parse accepts. A browser offer with
// audio, video and a data channel is under 10 KiB; anything beyond 64 KiB
// is abuse, not a session description.
const maxDescriptionSize = 64 << 10

// Parse reads a session description of either profile. Unparsable input,
// and attributes Strait relies on that cannot be read (rtpmap, fmtp,
// fingerprint, setup, crypto, rtcp), give an [*Error] with status 400;
// malformed candidates are skipped, unknown attributes ignored.
func Parse(b []byte) (*Description, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, malformed("empty description")
	}
	if len(b) > maxDescriptionSize {
		return nil, malformed("description of %d bytes exceeds %d", len(b), maxDescriptionSize)
	}
	if bytes.IndexByte(b, 0) >= 0 || bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\r")) {
		// RFC 8866 section 5 excludes NUL and lone CR from every field; a
		// value carrying them could smuggle a line into what Strait echoes.
		return nil, malformed("NUL or bare CR in description")
	}
	text, masked := maskMediaLines(string(b))
	var sd psdp.SessionDescription
	if err := unmarshal(&sd, text); err != nil {
		return nil, malformed("%v", err)
	}
	// pion stops without complaint at the end of the input, so a truncated
	// description gets this far; RFC 8866 section 5 requires both lines.
	switch {
	case sd.Origin.NetworkType == "":
		return nil, malformed("no o= line")
	case len(sd.TimeDescriptions) == 0:
		return nil, malformed("no t= line")
	}
	d := &Description{
		Origin: Origin{
			Username:  sd.Origin.Username,
			SessionID: sd.Origin.SessionID,
			Version:   sd.Origin.SessionVersion,
			Address:   sd.Origin.UnicastAddress,
		},
	}
	if c := sd.ConnectionInformation; c != nil && c.Address != nil {
		d.Address = c.Address.Address
	}
	sessionDir := SendRecv
	for _, a := range sd.Attributes {
		var err error
		switch a.Key {
		case "group":
			// Only the first BUNDLE group counts: a leg has one transport.
			if f := strings.Fields(a.Value); len(f) > 1 && f[0] == "BUNDLE" && d.Bundle == nil {
				d.Bundle = f[1:]
			}
		case "ice-lite":
			d.ICELite = true
		case "ice-ufrag":
			d.ICE.Ufrag = a.Value
		case "ice-pwd":
			d.ICE.Pwd = a.Value
		case "ice-options":
			d.ICE.Options = strings.Fields(a.Value)
		case "fingerprint":
			err = setFingerprint(&d.Fingerprint, a.Value)
		case "setup":
			var ok bool
			if d.Setup, ok = parseSetup(a.Value); !ok {
				err = fmt.Errorf("setup %q", a.Value)
			}
		default:
			if dir, ok := parseDirection(a.Key); ok {
				sessionDir = dir
			}
		}
		if err != nil {
			return nil, malformed("session: %v", err)
		}
	}
	d.Media = make([]Media, 0, len(sd.MediaDescriptions))
	for i, md := range sd.MediaDescriptions {
		m, err := parseMedia(d, md, sessionDir)
		if err != nil {
			return nil, malformed("m-line %d: %v", i, err)
		}
		if orig, ok := masked[i]; ok {
			m.Type, m.Proto, m.Kind = orig.media, orig.proto, kindOf(orig.media)
		}
		d.Media = append(d.Media, m)
	}
	return d, nil
}

// unmarshal runs pion's parser. It has a fuzz suite of its own, but a
// panic on hostile input must not take the B2BUA down with it, so one is
// turned into a parse error here.
func unmarshal(sd *psdp.SessionDescription, text string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser panic: %v", r)
		}
	}()
	return sd.UnmarshalString(text)
}

type maskedLine struct{ media, proto string }

// pionMedia and pionProtos are the media types and proto tokens pion/sdp
// accepts on an m-line; it refuses anything else outright.
var (
	pionMedia  = []string{"audio", "video", "text", "application", "message"}
	pionProtos = []string{"UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "TCP",
		"MSRP", "BFCP", "UDT", "IX", "MRCPv2", "FEC"}
)

// maskMediaLines makes pion/sdp accept m-lines it would refuse although
// they are valid SDP, chiefly "m=image 0 udptl t38" (T.38 fax, which PBXs
// offer in re-INVITEs): such a line is handed to pion as an application
// line and its real media type and proto are restored afterwards, so that
// the section can be rejected with port 0 instead of failing the whole
// description. It also ends the text with a line break, which pion needs
// after the last attribute.
func maskMediaLines(text string) (string, map[int]maskedLine) {
	if !strings.HasSuffix(text, "\n") {
		text += "\r\n"
	}
	if !strings.Contains(text, "m=") {
		return text, nil
	}
	var masked map[int]maskedLine
	lines := strings.SplitAfter(text, "\n")
	index := 0
	for i, line := range lines {
		body, ok := strings.CutPrefix(line, "m=")
		if !ok {
			continue
		}
		f := strings.Fields(body)
		if len(f) >= 3 && !pionAccepts(f[0], f[2]) {
			if masked == nil {
				masked = map[int]maskedLine{}
			}
			masked[index] = maskedLine{media: f[0], proto: f[2]}
			f[0], f[2] = "application", "UDP"
			lines[i] = "m=" + strings.Join(f, " ") + "\r\n"
		}
		index++
	}
	return strings.Join(lines, ""), masked
}

func pionAccepts(media, proto string) bool {
	if !slices.Contains(pionMedia, media) {
		return false
	}
	for p := range strings.SplitSeq(proto, "/") {
		if !slices.Contains(pionProtos, p) {
			return false
		}
	}
	return true
}

// parseMedia converts one media section, applying session-level fallbacks.
func parseMedia(d *Description, md *psdp.MediaDescription, sessionDir Direction) (Media, error) {
	m := Media{
		Type:      md.MediaName.Media,
		Kind:      kindOf(md.MediaName.Media),
		Port:      md.MediaName.Port.Value,
		Proto:     strings.Join(md.MediaName.Protos, "/"),
		Formats:   slices.Clone(md.MediaName.Formats),
		Address:   d.Address,
		Direction: sessionDir,
	}
	if c := md.ConnectionInformation; c != nil && c.Address != nil {
		m.Address = c.Address.Address
	}
	if len(m.Formats) == 0 {
		return Media{}, fmt.Errorf("no format on the m-line")
	}
	type rtpmap struct {
		name     string
		rate     uint32
		channels uint16
	}
	rtpmaps := map[uint8]rtpmap{}
	fmtps := map[uint8]string{}
	feedback := map[string][]string{}
	var ufrag, pwd, options, fingerprint, setup bool
	for _, a := range md.Attributes {
		var err error
		switch a.Key {
		case "rtpmap":
			var pt uint8
			var r rtpmap
			if pt, r.name, r.rate, r.channels, err = parseRtpmap(a.Value); err == nil {
				if _, dup := rtpmaps[pt]; !dup {
					rtpmaps[pt] = r
				}
			}
		case "fmtp":
			pt, params, _ := strings.Cut(a.Value, " ")
			var n uint64
			if n, err = strconv.ParseUint(pt, 10, 7); err != nil {
				err = fmt.Errorf("fmtp %q: bad payload type", a.Value)
			} else if _, dup := fmtps[uint8(n)]; !dup {
				fmtps[uint8(n)] = strings.TrimSpace(params)
			}
		case "rtcp-fb":
			pt, fb, _ := strings.Cut(a.Value, " ")
			if fb = strings.TrimSpace(fb); fb != "" {
				feedback[pt] = append(feedback[pt], fb)
			}
		case "ptime":
			m.Ptime = parseMillis(a.Value)
		case "maxptime":
			m.MaxPtime = parseMillis(a.Value)
		case "sendrecv", "sendonly", "recvonly", "inactive":
			m.Direction, _ = parseDirection(a.Key)
		case "mid":
			if m.Mid = a.Value; !isToken(m.Mid) {
				err = fmt.Errorf("mid %q is not a token", a.Value)
			}
		case "bundle-only":
			m.BundleOnly = true
		case "ice-ufrag":
			m.ICE.Ufrag, ufrag = a.Value, true
		case "ice-pwd":
			m.ICE.Pwd, pwd = a.Value, true
		case "ice-options":
			m.ICE.Options, options = strings.Fields(a.Value), true
		case "candidate":
			if c, cerr := parseCandidate(a.Value); cerr == nil {
				m.Candidates = append(m.Candidates, c)
			}
		case "end-of-candidates":
			m.EndOfCandidates = true
		case "fingerprint":
			err = setFingerprint(&m.Fingerprint, a.Value)
			fingerprint = true
		case "setup":
			var ok bool
			if m.Setup, ok = parseSetup(a.Value); !ok {
				err = fmt.Errorf("setup %q", a.Value)
			}
			setup = true
		case "rtcp-mux":
			m.RTCPMux = true
		case "rtcp-rsize":
			m.RTCPRsize = true
		case "rtcp":
			m.RTCPPort, m.RTCPAddress, err = parseRTCP(a.Value)
		case "crypto":
			var c Crypto
			if c, err = parseCrypto(a.Value); err == nil {
				m.Crypto = append(m.Crypto, c)
			}
		case "msid":
			m.MSID = a.Value
		case "ssrc":
			addSSRC(&m, a.Value)
		}
		if err != nil {
			return Media{}, err
		}
	}
	if !ufrag {
		m.ICE.Ufrag = d.ICE.Ufrag
	}
	if !pwd {
		m.ICE.Pwd = d.ICE.Pwd
	}
	if !options {
		m.ICE.Options = slices.Clone(d.ICE.Options)
	}
	if !fingerprint {
		m.Fingerprint = d.Fingerprint
	}
	if !setup {
		m.Setup = d.Setup
	}
	if isRTPProto(m.Proto) {
		for _, f := range m.Formats {
			n, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				return Media{}, fmt.Errorf("payload type %q is not a number of 0-127", f)
			}
			pt := uint8(n)
			c, ok := staticPayloadTypes[pt]
			if r, mapped := rtpmaps[pt]; mapped {
				c, ok = Codec{Name: r.name, ClockRate: r.rate, Channels: r.channels}, true
			}
			if !ok {
				continue // A dynamic payload type without rtpmap names no codec.
			}
			c.PayloadType = pt
			c.Fmtp = fmtps[pt]
			c.RTCPFeedback = append(slices.Clone(feedback["*"]), feedback[f]...)
			m.Codecs = append(m.Codecs, c)
		}
	}
	if !m.Rejected() && m.Address == "" {
		return Media{}, fmt.Errorf("no connection address (c=)")
	}
	if ip, err := netip.ParseAddr(m.Address); err == nil && ip.IsUnspecified() && m.ICE.Ufrag == "" {
		// RFC 3264 section 8.4: c=0.0.0.0 means "do not send to me".
		m.OldHold = true
		m.Direction = m.Direction.And(SendOnly)
	}
	return m, nil
}

// setFingerprint keeps the first fingerprint, or a later sha-256 one: the
// hash every WebRTC stack and the dataplane implement.
func setFingerprint(f *Fingerprint, v string) error {
	fp, err := parseFingerprint(v)
	if err != nil {
		return err
	}
	if f.IsZero() || (f.Algorithm != "sha-256" && fp.Algorithm == "sha-256") {
		*f = fp
	}
	return nil
}

// parseRtpmap reads "pt name/rate[/channels]".
func parseRtpmap(v string) (pt uint8, name string, rate uint32, channels uint16, err error) {
	p, enc, _ := strings.Cut(v, " ")
	n, err := strconv.ParseUint(p, 10, 7)
	if err != nil {
		return 0, "", 0, 0, fmt.Errorf("rtpmap %q: bad payload type", v)
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return 0, "", 0, 0, fmt.Errorf("rtpmap %q: want name/rate[/channels]", v)
	}
	r, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || r == 0 {
		return 0, "", 0, 0, fmt.Errorf("rtpmap %q: bad clock rate", v)
	}
	if len(parts) == 3 {
		c, err := strconv.ParseUint(parts[2], 10, 16)
		if err != nil {
			return 0, "", 0, 0, fmt.Errorf("rtpmap %q: bad channels", v)
		}
		channels = uint16(c)
	}
	return uint8(n), parts[0], uint32(r), channels, nil
}

// parseRTCP reads "port [IN IP4 address]" (RFC 3605 section 2.1).
func parseRTCP(v string) (port int, addr string, err error) {
	f := strings.Fields(v)
	if len(f) != 1 && len(f) != 4 {
		return 0, "", fmt.Errorf("rtcp %q: want port [nettype addrtype address]", v)
	}
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return 0, "", fmt.Errorf("rtcp %q: bad port", v)
	}
	if len(f) == 4 {
		addr = f[3]
	}
	return int(p), addr, nil
}

// parseMillis reads a=ptime and a=maxptime, which some PBXs write with a
// fraction ("20.0"); unreadable values count as absent.
func parseMillis(v string) int {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || f > maxPtime {
		return 0
	}
	return int(f)
}

// maxPtime is an upper bound for a=ptime and a=maxptime: packets longer than
// a few hundred milliseconds do not happen, and absurd values are ignored.
const maxPtime = 1000

// addSSRC records "id cname:x" from a=ssrc; other source attributes only
// register the source.
func addSSRC(m *Media, v string) {
	id, attr, _ := strings.Cut(v, " ")
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return
	}
	i := slices.IndexFunc(m.SSRCs, func(s SSRC) bool { return s.ID == uint32(n) })
	if i < 0 {
		m.SSRCs = append(m.SSRCs, SSRC{ID: uint32(n)})
		i = len(m.SSRCs) - 1
	}
	if cname, ok := strings.CutPrefix(attr, "cname:"); ok {
		m.SSRCs[i].CNAME = cname
	}
}

// isRTPProto reports whether a proto carries RTP, whose formats are payload
// types.
func isRTPProto(proto string) bool {
	return slices.Contains(strings.Split(strings.ToUpper(proto), "/"), "RTP")
}

// isWebRTCProto reports whether a proto is RTP over DTLS-SRTP on UDP
// (UDP/TLS/RTP/SAVPF, or UDP/TLS/RTP/SAVP): what an ICE-lite WebRTC leg
// terminates. TCP variants are not.
func isWebRTCProto(proto string) bool {
	p := strings.ToUpper(proto)
	return p == "UDP/TLS/RTP/SAVPF" || p == "UDP/TLS/RTP/SAVP"
}

// isPlainProto reports whether a proto is RTP over UDP without DTLS: what a
// plain leg terminates, with SDES keys for the SAVP variants.
func isPlainProto(proto string) bool {
	switch strings.ToUpper(proto) {
	case "RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF":
		return true
	}
	return false
}

// isSecureProto reports whether a plain proto needs SDES keys.
func isSecureProto(proto string) bool { return strings.Contains(strings.ToUpper(proto), "SAVP") }

// isToken reports whether s is an SDP token (RFC 8866 section 9): what a
// mid must be, since Strait echoes mids into its answers.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]`, c) >= 0 {
			return false
		}
	}
	return true
}

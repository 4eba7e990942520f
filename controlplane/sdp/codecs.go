package sdp

import (
	"slices"
	"strconv"
	"strings"
)

// Codec is one RTP payload format of a media section: a=rtpmap with its
// a=fmtp and a=rtcp-fb lines.
type Codec struct {
	// PayloadType is the RTP payload type, 0-127.
	PayloadType uint8
	// Name is the encoding name as written, e.g. "opus", "PCMU",
	// "telephone-event". Names compare case-insensitively.
	Name string
	// ClockRate is the RTP clock rate in Hz (8000 for G.722, RFC 3551
	// section 4.5.2).
	ClockRate uint32
	// Channels is the encoding parameter of audio codecs; 0 when absent,
	// which means one.
	Channels uint16
	// Fmtp is the a=fmtp parameter string, e.g. "0-16".
	Fmtp string
	// RTCPFeedback are the a=rtcp-fb values for this payload type (and the
	// "*" wildcard), e.g. "nack pli", "transport-cc".
	RTCPFeedback []string
}

// String returns the rtpmap form, e.g. "opus/48000/2"; the channel count
// is written when it was given.
func (c Codec) String() string {
	s := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	if c.Channels > 0 {
		s += "/" + strconv.FormatUint(uint64(c.Channels), 10)
	}
	return s
}

// Is reports whether the codec's encoding name is name, ignoring case.
func (c Codec) Is(name string) bool { return strings.EqualFold(c.Name, name) }

// Encoding names with a meaning for negotiation.
const (
	nameTelephoneEvent = "telephone-event"
	nameOpus           = "opus"
	nameCN             = "CN"
	nameRED            = "red"
	nameRTX            = "rtx"
)

// auxiliary reports whether c is not a media codec of its own but rides on
// one: DTMF events (RFC 4733), comfort noise (RFC 3389), redundancy
// (RFC 2198), retransmission (RFC 4588) or FEC (RFC 5109, RFC 8627). Such a
// codec alone does not make a section worth carrying.
func (c Codec) auxiliary() bool {
	switch strings.ToLower(c.Name) {
	case nameTelephoneEvent, "cn", nameRED, nameRTX, "ulpfec":
		return true
	}
	return strings.HasPrefix(strings.ToLower(c.Name), "flexfec")
}

// channels returns the channel count with the default of one filled in.
func (c Codec) channels() uint16 { return max(c.Channels, 1) }

// baseKey identifies a codec across payload type numberings: name, clock
// rate and channels.
func (c Codec) baseKey() string {
	return strings.ToLower(c.Name) + "/" + strconv.FormatUint(uint64(c.ClockRate), 10) +
		"/" + strconv.FormatUint(uint64(c.channels()), 10)
}

// refs returns the payload types a retransmission or redundancy format
// refers to (rtx "apt=pt", RFC 4588; red "pt/pt", RFC 2198), and whether
// c is such a format with readable references.
func (c Codec) refs() ([]uint8, bool) {
	switch {
	case c.Is(nameRTX):
		for p := range strings.SplitSeq(c.Fmtp, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "apt="); ok {
				if pt, err := strconv.ParseUint(v, 10, 7); err == nil {
					return []uint8{uint8(pt)}, true
				}
			}
		}
		return nil, false
	case c.Is(nameRED) && c.Fmtp != "":
		var pts []uint8
		for v := range strings.SplitSeq(strings.TrimSpace(c.Fmtp), "/") {
			pt, err := strconv.ParseUint(v, 10, 7)
			if err != nil {
				return nil, false
			}
			pts = append(pts, uint8(pt))
		}
		return pts, true
	}
	return nil, false
}

// withRefs returns c with its payload type references rewritten by m.
func (c Codec) withRefs(m map[uint8]uint8) Codec {
	switch {
	case c.Is(nameRTX):
		parts := strings.Split(c.Fmtp, ";")
		for i, p := range parts {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "apt="); ok {
				if pt, err := strconv.ParseUint(v, 10, 7); err == nil {
					if n, ok := m[uint8(pt)]; ok {
						parts[i] = "apt=" + strconv.Itoa(int(n))
					}
				}
			}
		}
		c.Fmtp = strings.Join(parts, ";")
	case c.Is(nameRED):
		if pts, ok := c.refs(); ok {
			s := make([]string, len(pts))
			for i, pt := range pts {
				if n, ok := m[pt]; ok {
					pt = n
				}
				s[i] = strconv.Itoa(int(pt))
			}
			c.Fmtp = strings.Join(s, "/")
		}
	}
	return c
}

// formatKeys returns, for each codec of list, a key that identifies it
// across payload type numberings. For rtx and red the key includes the keys
// of the codecs referred to, so that "rtx for VP8" on one side matches "rtx
// for VP8" on the other whatever the numbers.
func formatKeys(list []Codec) []string {
	keys := make([]string, len(list))
	index := make(map[uint8]int, len(list))
	for i, c := range list {
		keys[i] = c.baseKey()
		if _, dup := index[c.PayloadType]; !dup {
			index[c.PayloadType] = i
		}
	}
	for i, c := range list {
		pts, ok := c.refs()
		if !ok {
			continue
		}
		for _, pt := range pts {
			if j, ok := index[pt]; ok {
				keys[i] += "|" + list[j].baseKey()
			} else {
				keys[i] += "|?"
			}
		}
	}
	return keys
}

func (c Codec) clone() Codec {
	c.RTCPFeedback = slices.Clone(c.RTCPFeedback)
	return c
}

// hasMediaCodec reports whether list holds a codec that is not auxiliary.
func hasMediaCodec(list []Codec) bool {
	return slices.ContainsFunc(list, func(c Codec) bool { return !c.auxiliary() })
}

// staticPayloadTypes are the payload types RFC 3551 section 6 assigns, for
// m-lines that list them without a=rtpmap.
var staticPayloadTypes = map[uint8]Codec{
	0:  {Name: "PCMU", ClockRate: 8000},
	3:  {Name: "GSM", ClockRate: 8000},
	4:  {Name: "G723", ClockRate: 8000},
	5:  {Name: "DVI4", ClockRate: 8000},
	6:  {Name: "DVI4", ClockRate: 16000},
	7:  {Name: "LPC", ClockRate: 8000},
	8:  {Name: "PCMA", ClockRate: 8000},
	9:  {Name: "G722", ClockRate: 8000},
	10: {Name: "L16", ClockRate: 44100, Channels: 2},
	11: {Name: "L16", ClockRate: 44100},
	12: {Name: "QCELP", ClockRate: 8000},
	13: {Name: "CN", ClockRate: 8000},
	14: {Name: "MPA", ClockRate: 90000},
	15: {Name: "G728", ClockRate: 8000},
	16: {Name: "DVI4", ClockRate: 11025},
	17: {Name: "DVI4", ClockRate: 22050},
	18: {Name: "G729", ClockRate: 8000},
	25: {Name: "CelB", ClockRate: 90000},
	26: {Name: "JPEG", ClockRate: 90000},
	28: {Name: "nv", ClockRate: 90000},
	31: {Name: "H261", ClockRate: 90000},
	32: {Name: "MPV", ClockRate: 90000},
	33: {Name: "MP2T", ClockRate: 90000},
	34: {Name: "H263", ClockRate: 90000},
}

// Policy is the codec configuration of one side of Strait, e.g. a trunk's
// list. Names compare case-insensitively.
type Policy struct {
	// Codecs lists the encoding names accepted, e.g. "PCMU", "opus",
	// "telephone-event", "VP8". Auxiliary formats (telephone-event, CN,
	// red, rtx, ulpfec) are dropped unless listed. The order matters only
	// when Strait offers from scratch ([Policy.NewStream]); filtering an
	// offer keeps the offerer's order.
	Codecs []string
}

// DefaultPolicy is what a SIP trunk gets unless configured otherwise: G.711
// both laws, G.722 and DTMF events. Add "opus" when the trunk takes it.
func DefaultPolicy() Policy {
	return Policy{Codecs: []string{"PCMU", "PCMA", "G722", nameTelephoneEvent}}
}

// WebRTCPolicy is what browsers can take: Opus first, then what PBXs speak
// that browsers also implement (RFC 7874 section 3), and DTMF events.
func WebRTCPolicy() Policy {
	return Policy{Codecs: []string{nameOpus, "G722", "PCMU", "PCMA", nameTelephoneEvent}}
}

// Allows reports whether the policy accepts the encoding name.
func (p Policy) Allows(name string) bool {
	return slices.ContainsFunc(p.Codecs, func(n string) bool { return strings.EqualFold(n, name) })
}

// Filter returns the codecs of offered the policy accepts, in the offerer's
// order and numbering. Telephone-event and CN are kept only at the clock
// rate of a kept media codec (events share the audio stream's clock,
// RFC 4733); red and rtx only when the codecs they protect are kept.
func (p Policy) Filter(offered []Codec) []Codec {
	rates := map[uint32]bool{}
	kept := map[uint8]bool{}
	for _, c := range offered {
		if !c.auxiliary() && p.Allows(c.Name) {
			rates[c.ClockRate] = true
			kept[c.PayloadType] = true
		}
	}
	var out []Codec
	for _, c := range offered {
		if !p.Allows(c.Name) {
			continue
		}
		keep := true
		switch {
		case !c.auxiliary():
		case c.Is(nameTelephoneEvent) || c.Is(nameCN):
			keep = rates[c.ClockRate]
		case c.Is(nameRED) || c.Is(nameRTX):
			pts, ok := c.refs()
			keep = ok && len(pts) > 0
			for _, pt := range pts {
				keep = keep && kept[pt]
			}
		default:
			keep = len(kept) > 0
		}
		if keep {
			out = append(out, c.clone())
		}
	}
	return out
}

// wellKnownCodecs are the codecs Strait can offer from scratch, with the
// payload types and parameters browsers use for them, so that PT rewriting
// in the dataplane is the exception.
var wellKnownCodecs = []Codec{
	{PayloadType: 111, Name: nameOpus, ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
	{PayloadType: 9, Name: "G722", ClockRate: 8000},
	{PayloadType: 0, Name: "PCMU", ClockRate: 8000},
	{PayloadType: 8, Name: "PCMA", ClockRate: 8000},
	{PayloadType: 18, Name: "G729", ClockRate: 8000, Fmtp: "annexb=no"},
	{PayloadType: 110, Name: nameTelephoneEvent, ClockRate: 48000, Fmtp: "0-16"},
	{PayloadType: 101, Name: nameTelephoneEvent, ClockRate: 8000, Fmtp: "0-16"},
	{PayloadType: 13, Name: nameCN, ClockRate: 8000},
	{PayloadType: 96, Name: "VP8", ClockRate: 90000, RTCPFeedback: []string{"nack", "nack pli", "ccm fir"}},
	{PayloadType: 102, Name: "H264", ClockRate: 90000,
		Fmtp:         "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: []string{"nack", "nack pli", "ccm fir"}},
}

// videoClockRate is the RTP clock of every video payload format (RFC 3551
// section 5), which tells the well-known video codecs from the audio ones.
const videoClockRate = 90000

// NewStream returns a sendrecv stream of the given kind offering the
// policy's codecs, in the policy's order, for an offer Strait makes without
// one to start from (a delayed-offer INVITE). Only the codecs in
// wellKnownCodecs can be offered this way (Opus, G.722, G.711, G.729,
// telephone-event, CN, VP8, H.264); a kind without any of them in the policy
// yields a rejected stream.
func (p Policy) NewStream(kind Kind) Stream {
	s := Stream{Kind: kind, media: kind.String()}
	isKind := func(c Codec) bool { return (c.ClockRate == videoClockRate) == (kind == KindVideo) }
	rates := map[uint32]bool{}
	for _, name := range p.Codecs {
		for _, c := range wellKnownCodecs {
			if c.Is(name) && !c.auxiliary() && isKind(c) {
				s.Codecs = append(s.Codecs, c.clone())
				rates[c.ClockRate] = true
			}
		}
	}
	for _, name := range p.Codecs {
		for _, c := range wellKnownCodecs {
			if c.Is(name) && c.auxiliary() && isKind(c) && rates[c.ClockRate] {
				s.Codecs = append(s.Codecs, c.clone())
			}
		}
	}
	if !kind.relayed() || !hasMediaCodec(s.Codecs) {
		s.Codecs = nil
		s.Rejected = true
	}
	return s
}

// AnswerCodecs returns the codecs an answer to offered carries when the
// answerer (through Strait, the far leg) takes chosen: the offered codecs
// that chosen also has, in chosen's order of preference with Opus first,
// numbered as the offer numbers them (RFC 3264 section 6.1). Each keeps
// chosen's fmtp (what the far end receives) and the rtcp-fb both sides
// list. Telephone-event and CN are kept only at the clock rate of a kept
// media codec.
func AnswerCodecs(offered, chosen []Codec) []Codec {
	offeredKeys, chosenKeys := formatKeys(offered), formatKeys(chosen)
	used := make([]bool, len(offered))
	match := func(j int) int {
		for i := range offered {
			if !used[i] && offeredKeys[i] == chosenKeys[j] {
				used[i] = true
				return i
			}
		}
		return -1
	}
	var order []int
	for j, c := range chosen {
		if !c.auxiliary() && c.Is(nameOpus) {
			order = append(order, j)
		}
	}
	for j, c := range chosen {
		if !c.auxiliary() && !c.Is(nameOpus) {
			order = append(order, j)
		}
	}
	var out []Codec
	rates := map[uint32]bool{}
	kept := map[uint8]bool{}
	take := func(i, j int) {
		c := offered[i].clone()
		if _, isRef := c.refs(); !isRef && chosen[j].Fmtp != "" {
			c.Fmtp = chosen[j].Fmtp
		}
		c.RTCPFeedback = nil
		for _, fb := range offered[i].RTCPFeedback {
			if slices.Contains(chosen[j].RTCPFeedback, fb) {
				c.RTCPFeedback = append(c.RTCPFeedback, fb)
			}
		}
		out = append(out, c)
	}
	for _, j := range order {
		if i := match(j); i >= 0 {
			take(i, j)
			rates[offered[i].ClockRate] = true
			kept[offered[i].PayloadType] = true
		}
	}
	for j, c := range chosen {
		if !c.auxiliary() {
			continue
		}
		if (c.Is(nameTelephoneEvent) || c.Is(nameCN)) && !rates[c.ClockRate] {
			continue
		}
		i := match(j)
		if i < 0 {
			continue
		}
		if pts, ok := offered[i].refs(); ok && !allKept(pts, kept) {
			continue
		}
		take(i, j)
	}
	return out
}

func allKept(pts []uint8, kept map[uint8]bool) bool {
	for _, pt := range pts {
		if !kept[pt] {
			return false
		}
	}
	return true
}

// SharedCodecs pairs the codecs two legs ended up with for the same stream:
// the codecs present on both, by name, clock rate and channels, in a's
// order. a2[i] and b2[i] are the same codec as each leg numbers it, which is
// what the dataplane's per-leg codec lists need (it relays between equal
// codecs and rewrites only the payload type, e.g. telephone-event 126 on the
// browser leg to 101 on the trunk leg).
func SharedCodecs(a, b []Codec) (a2, b2 []Codec) {
	aKeys, bKeys := formatKeys(a), formatKeys(b)
	used := make([]bool, len(b))
	for i := range a {
		for j := range b {
			if !used[j] && aKeys[i] == bKeys[j] {
				used[j] = true
				a2 = append(a2, a[i].clone())
				b2 = append(b2, b[j].clone())
				break
			}
		}
	}
	return a2, b2
}

// TelephoneEvent returns the telephone-event format (RFC 4733) of codecs at
// the given clock rate, e.g. 8000 for a G.711 call or 48000 for Opus.
func TelephoneEvent(codecs []Codec, clockRate uint32) (Codec, bool) {
	for _, c := range codecs {
		if c.Is(nameTelephoneEvent) && c.ClockRate == clockRate {
			return c, true
		}
	}
	return Codec{}, false
}

package sdp

import (
	"fmt"
	"slices"
	"strings"
)

// knownNames are the encoding names a codec list (--codecs) may hold: the
// codecs Strait offers from scratch, the static payload types of RFC 3551,
// and the dynamic formats of the IANA RTP payload format registry that
// PBXs and browsers use. A name outside it is a typo far more often than a
// codec nobody has heard of, and a typo would silently drop a codec.
var knownNames = []string{
	nameOpus, "G722", "PCMU", "PCMA", "G729", "G7221", "G726-16", "G726-24", "G726-32", "G726-40",
	"G723", "G728", "GSM", "iLBC", "speex", "AMR", "AMR-WB", "EVS", "SILK", "L16", "DVI4", "LPC", "QCELP",
	"MPA", nameTelephoneEvent, nameCN, nameRED, nameRTX, "ulpfec", "flexfec-03",
	"VP8", "VP9", "AV1", "H264", "H265", "H263", "H263-1998", "H261", "JPEG", "MPV", "MP2T", "CelB", "nv",
}

// CheckCodecNames returns an error naming each entry of a codec list that
// is not a known encoding name (compared case-insensitively).
func CheckCodecNames(names []string) error {
	var bad []string
	for _, n := range names {
		if !slices.ContainsFunc(knownNames, func(k string) bool { return strings.EqualFold(k, n) }) {
			bad = append(bad, fmt.Sprintf("%q", n))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("unknown codec %s (known: %s)", strings.Join(bad, ", "), strings.Join(knownNames, " "))
	}
	return nil
}

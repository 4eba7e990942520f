package quality

import (
	"math"
	"strings"
)

// Codec holds the E-model's codec figures (ITU-T G.113 Appendix I): Ie, the
// equipment impairment of the codec without loss, and Bpl, its robustness
// to random packet loss.
type Codec struct {
	Ie, Bpl float64
}

// CodecByName returns the E-model figures for an rtpmap encoding name.
// G.711 (PCMU, PCMA) and G.729 are G.113 Appendix I's values (G.711 with
// packet loss concealment). G.722 and Opus have no narrowband-scale
// figures there; they are given G.711's, which makes their MOS an estimate
// on the same scale as the G.711 leg of a call rather than a wideband
// score. Unknown names get G.711's too.
func CodecByName(name string) Codec {
	switch strings.ToUpper(name) {
	case "G729", "G729A":
		return Codec{Ie: 11, Bpl: 19}
	case "GSM":
		return Codec{Ie: 20, Bpl: 10} // GSM-FR, G.113 Table I.1
	case "ILBC":
		return Codec{Ie: 11, Bpl: 32} // 20 ms frames, G.113 Table I.3
	default: // PCMU, PCMA, G722, opus, unknown
		return Codec{Ie: 0, Bpl: 25.1}
	}
}

// Delay is the one-way mouth-to-ear delay the E-model is given, estimated
// from what a relay can see: half the round trip, a jitter buffer holding
// twice the jitter, and 10 ms of packetisation and codec delay (the
// effective-latency term of the common simplified models, e.g. baresip's
// mos.c).
func Delay(rtt, jitter float64) float64 { return rtt/2 + 2*jitter + 0.010 }

// RFactor computes a simplified ITU-T G.107 transmission rating
//
//	R = 93.2 - Id - Ie,eff
//
// where 93.2 is G.107's default R0 - Is (no echo, default loudness),
//
//	Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)
//
// is the delay impairment for a one-way delay d in milliseconds (Cole and
// Rosenbluth's fit of G.107's Idd, H the step function), and
//
//	Ie,eff = Ie + (95 - Ie) Ppl / (Ppl + Bpl)
//
// is G.107's effective equipment impairment for a packet loss of Ppl
// percent, taken as random (BurstR = 1). delay is in seconds, loss a
// fraction in [0, 1].
func RFactor(c Codec, loss, delay float64) float64 {
	d := delay * 1000
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ppl := math.Min(math.Max(loss, 0), 1) * 100
	ie := c.Ie + (95-c.Ie)*ppl/(ppl+c.Bpl)
	return 93.2 - id - ie
}

// MOS maps an R factor to an estimated mean opinion score (G.107 Annex B):
// 1 below R = 0, 4.5 above R = 100, and between them
//
//	MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)
//
// The best a narrowband call can score is 4.41 (R = 93.2).
func MOS(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
}

// EstimateMOS is MOS(RFactor(c, loss, Delay(rtt, jitter))): rtt and jitter in
// seconds, loss a fraction.
func EstimateMOS(c Codec, loss, rtt, jitter float64) float64 {
	return MOS(RFactor(c, loss, Delay(rtt, jitter)))
}

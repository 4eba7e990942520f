package app

import (
	"math"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// toneHz is the tone the app plays: a 440 Hz A.
const toneHz = 440

// playTone writes a tone to track in 20 ms G.711 frames until stop is
// closed. alaw picks PCMA, else PCMU.
func playTone(track *webrtc.TrackLocalStaticSample, alaw bool, stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		frame := make([]byte, 160)
		for i := range frame {
			s := int16(8000 * math.Sin(2*math.Pi*toneHz*float64(n)/8000))
			n++
			if alaw {
				frame[i] = linearToALaw(s)
			} else {
				frame[i] = linearToULaw(s)
			}
		}
		if err := track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond}); err != nil {
			return
		}
	}
}

// linearToULaw encodes a 16-bit sample as G.711 mu-law.
func linearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	x := int(s)
	sign := 0
	if x < 0 {
		x, sign = -x, 0x80
	}
	x = min(x, clip) + bias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// linearToALaw encodes a 16-bit sample as G.711 A-law.
func linearToALaw(s int16) byte {
	x := int(s) >> 3
	sign := 0x80
	if x < 0 {
		x, sign = -x-1, 0
	}
	var out int
	switch {
	case x < 32:
		out = x >> 1
	default:
		exp := 1
		for y := x >> 5; y > 1; y >>= 1 {
			exp++
		}
		out = exp<<4 | (x>>exp)&0x0f
	}
	return byte((out | sign) ^ 0x55)
}

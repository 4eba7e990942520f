package harness

import (
	"encoding/binary"
	"math"
)

// ToneHz is the frequency of the test tone that the fake microphone and
// sipp send.
const ToneHz = 440

// toneWAV returns secs seconds of a ToneHz sine at -12 dBFS as a 16-bit
// mono 48 kHz WAV file: Chromium's fake microphone plays it in a loop
// (--use-file-for-fake-audio-capture), so every call carries a steady tone
// whose energy the far end can measure.
func toneWAV(secs int) []byte {
	const rate = 48000
	n := rate * secs
	b := make([]byte, 44+2*n)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], 2*rate)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := range n {
		s := int16(8192 * math.Sin(2*math.Pi*ToneHz*float64(i)/rate))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}

// toneALaw returns secs seconds of a ToneHz sine as raw G.711 A-law at
// 8 kHz, the format of sipp's rtp_stream action.
func toneALaw(secs int) []byte {
	const rate = 8000
	b := make([]byte, rate*secs)
	for i := range b {
		b[i] = linearToALaw(int16(8192 * math.Sin(2*math.Pi*ToneHz*float64(i)/rate)))
	}
	return b
}

// linearToALaw encodes one sample as G.711 A-law (ITU-T G.711, table 1).
func linearToALaw(pcm int16) byte {
	sign := byte(0x80)
	s := int(pcm)
	if s < 0 {
		sign = 0
		s = -s - 1
	}
	s >>= 3 // 13-bit magnitude
	var v byte
	if s < 32 {
		v = byte(s >> 1)
	} else {
		seg := byte(1)
		for s >= 64 && seg < 7 {
			s >>= 1
			seg++
		}
		v = seg<<4 | byte((s>>1)&0x0f)
	}
	return (v | sign) ^ 0x55
}

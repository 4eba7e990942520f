package callrate

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// pcapOf builds a classic pcap (microseconds, Ethernet) of UDP datagrams
// between port 5060 (strait) and 6000 (the caller).
func pcapOf(t *testing.T, msgs []struct {
	at       time.Duration
	toStrait bool
	text     string
}) []byte {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1)
	b.Write(hdr)
	base := time.Unix(1_800_000_000, 0)
	for _, m := range msgs {
		payload := []byte(m.text)
		frame := make([]byte, 14+20+8+len(payload))
		frame[12], frame[13] = 0x08, 0x00
		ip := frame[14:]
		ip[0], ip[9] = 0x45, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
		udp := ip[20:]
		src, dst := uint16(5060), uint16(6000)
		if m.toStrait {
			src, dst = dst, src
		}
		binary.BigEndian.PutUint16(udp[0:], src)
		binary.BigEndian.PutUint16(udp[2:], dst)
		copy(udp[8:], payload)
		at := base.Add(m.at)
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], uint32(at.Unix()))
		le.PutUint32(rec[4:], uint32(at.Nanosecond()/1000))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	return b.Bytes()
}

// Requests pair with strait's answers by Call-ID and CSeq method; a
// retransmitted request keeps its first time; the first response to an
// INVITE and its 200 are timed apart; other ports' and methods' messages
// are not counted.
func TestReadWire(t *testing.T) {
	msg := func(first, callID, cseq string) string {
		return first + "\r\nVia: SIP/2.0/UDP 127.0.0.1:6000\r\nCall-ID: " + callID + "\r\nCSeq: " + cseq + "\r\nContent-Length: 0\r\n\r\n"
	}
	ms := time.Millisecond
	p := pcapOf(t, []struct {
		at       time.Duration
		toStrait bool
		text     string
	}{
		{0, true, msg("INVITE sip:echo@127.0.0.1 SIP/2.0", "a", "1 INVITE")},
		{1 * ms, false, msg("SIP/2.0 100 Trying", "a", "1 INVITE")},
		{500 * ms, true, msg("INVITE sip:echo@127.0.0.1 SIP/2.0", "a", "1 INVITE")}, // retransmission
		{600 * ms, false, msg("SIP/2.0 200 OK", "a", "1 INVITE")},
		{601 * ms, true, msg("ACK sip:echo@127.0.0.1 SIP/2.0", "a", "1 ACK")},
		{700 * ms, true, msg("INVITE sip:echo@127.0.0.1 SIP/2.0", "b", "1 INVITE")},
		{703 * ms, false, msg("SIP/2.0 200 OK", "b", "1 INVITE")},
		{2000 * ms, true, msg("BYE sip:echo@127.0.0.1 SIP/2.0", "a", "2 BYE")},
		{2002 * ms, false, msg("SIP/2.0 200 OK", "a", "2 BYE")},
		{2003 * ms, false, msg("SIP/2.0 200 OK", "a", "2 BYE")}, // a second 200: not counted again
		{2100 * ms, true, msg("OPTIONS sip:echo@127.0.0.1 SIP/2.0", "c", "1 OPTIONS")},
		{2101 * ms, false, msg("SIP/2.0 200 OK", "c", "1 OPTIONS")},
	})
	w, err := readWire(bytes.NewReader(p), 5060)
	if err != nil {
		t.Fatal(err)
	}
	want := wireTimes{invite: []float64{600, 3}, bye: []float64{2}, firstInvite: []float64{1, 3}}
	eq := func(a, b []float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	if !eq(w.invite, want.invite) || !eq(w.bye, want.bye) || !eq(w.firstInvite, want.firstInvite) {
		t.Fatalf("got %+v, want %+v", w, want)
	}
	if _, err := readWire(bytes.NewReader([]byte("not a pcap file at all....")), 5060); err == nil {
		t.Fatal("a file that is not pcap was read")
	}
}

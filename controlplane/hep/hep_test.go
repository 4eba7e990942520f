package hep

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/hep/heptest"
)

func TestAppendDecodes(t *testing.T) {
	at := time.Unix(1_700_000_000, 123_456_000)
	for _, tc := range []struct {
		name   string
		m      Message
		family uint8
		proto  uint8
	}{
		{"udp v4", Message{Src: netip.MustParseAddrPort("10.0.0.1:5060"), Dst: netip.MustParseAddrPort("192.0.2.7:5070"),
			Time: at, Payload: []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), CallID: "abc@h"}, 2, 17},
		{"ws v6", Message{Src: netip.MustParseAddrPort("[2001:db8::1]:443"), Dst: netip.MustParseAddrPort("[2001:db8::2]:50000"),
			TCP: true, Time: at, Payload: []byte("SIP/2.0 200 OK\r\n\r\n")}, 10, 6},
		{"mixed families as v6", Message{Src: netip.MustParseAddrPort("10.0.0.1:5060"), Dst: netip.MustParseAddrPort("[2001:db8::2]:5060"),
			Time: at, Payload: []byte("x")}, 10, 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := Append([]byte("junk before"), tc.m, 2001, "s3cret")
			d, err := heptest.Decode(pkt[len("junk before"):])
			if err != nil {
				t.Fatal(err)
			}
			src, dst := tc.m.Src, tc.m.Dst
			if d.Family == 10 {
				src = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
				dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
			}
			if d.Family != tc.family || d.Proto != tc.proto || d.Src != src || d.Dst != dst || d.ProtoType != ProtoSIP ||
				d.Sec != 1_700_000_000 || d.Usec != 123_456 || d.CaptureID != 2001 || d.AuthKey != "s3cret" ||
				string(d.Payload) != string(tc.m.Payload) || d.CallID != tc.m.CallID {
				t.Fatalf("decoded %+v from %+v", d, tc.m)
			}
		})
	}
	if d, _ := heptest.Decode(Append(nil, Message{Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2")}, 1, "")); d.AuthKey != "" {
		t.Error("an auth key chunk without a password")
	}
}

func TestParseURL(t *testing.T) {
	for in, ok := range map[string]bool{"udp://10.0.0.5:9060": true, "udp://homer:9060": true, "udp://[::1]:9060": true,
		"tcp://10.0.0.5:9060": false, "udp://10.0.0.5": false, "10.0.0.5:9060": false, "udp://h:9060/x": false} {
		if _, err := ParseURL(in); (err == nil) != ok {
			t.Errorf("ParseURL(%q): %v", in, err)
		}
	}
}

// The exporter sends what it captures to the server, and when its queue
// is full drops (and counts) instead of blocking the caller.
func TestExporterQueueBounded(t *testing.T) {
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e, err := New(Config{URL: "udp://" + srv.LocalAddr().String(), CaptureID: 7, Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Src: netip.MustParseAddrPort("127.0.0.1:5060"), Dst: netip.MustParseAddrPort("127.0.0.1:5070"), Time: time.Now(),
		Payload: []byte("MESSAGE sip:a SIP/2.0\r\n\r\n")}
	start := time.Now()
	const n = 20000
	for range n {
		e.Capture(m)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Capture blocked: %v for %d messages", d, n)
	}
	e.Capture(Message{Payload: make([]byte, MaxPayload+1)})
	e.Close()
	st := e.Stats()
	if st.Sent+st.Dropped+st.Failed != n+1 || st.Dropped == 0 || st.Sent == 0 {
		t.Fatalf("stats %+v after %d captures", st, n+1)
	}
	buf := make([]byte, 65536)
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	k, _, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := heptest.Decode(buf[:k])
	if err != nil || d.CaptureID != 7 || string(d.Payload) != string(m.Payload) {
		t.Fatalf("received %+v, %v", d, err)
	}
	t.Logf("%+v", st)
}

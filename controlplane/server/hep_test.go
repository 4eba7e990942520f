package server

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/hep/heptest"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// Issue 13: with --hep, every SIP message of a call, both legs (a SIP
// phone over UDP, a browser over WebSocket), in and out, reaches the
// capture server as HEP3 that decodes (heptest, written from the
// specification) to the message, with the capture id, the password, the
// addresses and the Call-ID; the count is exported.
func TestHEPCapturesBothSides(t *testing.T) {
	homer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer homer.Close()
	var mu sync.Mutex
	var got []*heptest.Decoded
	var bad []error
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := homer.ReadFrom(buf)
			if err != nil {
				return
			}
			d, err := heptest.Decode(bytes.Clone(buf[:n]))
			mu.Lock()
			if err != nil {
				bad = append(bad, err)
			} else {
				got = append(got, d)
			}
			mu.Unlock()
		}
	}()
	e := start(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "carol:c-secret"}
		c.HEP = "udp://" + homer.LocalAddr().String()
		c.HEPCaptureID = 2001
		c.HEPPassword = "homer-pw"
	})
	alice := registered(t, e, "alice", "a-secret")
	carol, err := siptest.NewUDP(e.srv.SIPAddr(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close()
	if res, err := carol.Register(ctx(t), "c-secret", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("carol REGISTER: %v %v", res, err)
	}
	plain := newPlain(t)
	call, err := carol.Invite(ctx(t), "alice", siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := alice.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mb := newAnswerer(t)
	go inc.Answer(mb.answer(t, inc.Invite.Body()))
	if res, err := call.WaitAnswer(ctx(t), ""); err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitCalls(0)
	mb.Close()

	sipAddr, httpAddr := e.srv.SIPAddr(), e.srv.HTTPAddr()
	// Each leg's messages, as Homer would list them: "in"/"out" as seen
	// by Strait, the transport, the start line, the Call-ID.
	want := []string{
		"in udp REGISTER *",
		"out udp 401 REGISTER *",
		"out udp 200 REGISTER *",
		"in tcp REGISTER *",
		"out tcp 200 REGISTER *",
		fmt.Sprintf("in udp INVITE %s", call.CallID),
		fmt.Sprintf("out udp 200 INVITE %s", call.CallID),
		fmt.Sprintf("in udp ACK %s", call.CallID),
		fmt.Sprintf("in udp BYE %s", call.CallID),
		fmt.Sprintf("out udp 200 BYE %s", call.CallID),
		fmt.Sprintf("out tcp INVITE %s", inc.CallID),
		fmt.Sprintf("in tcp 200 INVITE %s", inc.CallID),
		fmt.Sprintf("out tcp ACK %s", inc.CallID),
		fmt.Sprintf("out tcp BYE %s", inc.CallID),
		fmt.Sprintf("in tcp 200 BYE %s", inc.CallID),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		seen := map[string]bool{}
		for _, d := range got {
			if d.CaptureID != 2001 || d.AuthKey != "homer-pw" || d.ProtoType != 1 {
				t.Fatalf("packet without the capture id, password or SIP type: %+v", d)
			}
			desc := describe(d, sipAddr, httpAddr)
			seen[desc] = true
			seen[desc[:strings.LastIndexByte(desc, ' ')]+" *"] = true
		}
		var missing []string
		for _, w := range want {
			if !seen[w] {
				missing = append(missing, w)
			}
		}
		n, errs := len(got), bad
		mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("undecodable HEP: %v", errs)
		}
		if len(missing) == 0 {
			sent := metricValue(t, e.srv.Metrics.Registry, "strait_hep_messages_total", map[string]string{"result": "sent"})
			if sent < float64(n) {
				t.Errorf("strait_hep_messages_total{result=sent} %v, %d received", sent, n)
			}
			t.Logf("%d HEP packets, every message of both legs among them", n)
			return
		}
		if time.Now().After(deadline) {
			mu.Lock()
			var all []string
			for _, d := range got {
				all = append(all, describe(d, sipAddr, httpAddr))
			}
			mu.Unlock()
			t.Fatalf("missing %q\namong %q", missing, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// describe names a captured message: direction relative to Strait (its
// SIP address for UDP, its HTTP address for the browsers' WebSocket),
// transport, start line (method, or code and CSeq method), Call-ID.
func describe(d *heptest.Decoded, straitSIP, straitHTTP string) string {
	lines := strings.SplitN(string(d.Payload), "\r\n", 2)
	start := strings.Fields(lines[0])
	if len(start) < 2 {
		return "garbled " + lines[0]
	}
	what := start[0]
	if strings.HasPrefix(start[0], "SIP/2.0") {
		cseq := ""
		for _, l := range strings.Split(string(d.Payload), "\r\n") {
			if v, ok := strings.CutPrefix(l, "CSeq:"); ok {
				if f := strings.Fields(v); len(f) == 2 {
					cseq = f[1]
				}
			}
		}
		what = start[1] + " " + cseq
	}
	proto, own := "tcp", straitHTTP
	if d.Proto == 17 {
		proto, own = "udp", straitSIP
	}
	dir := ""
	switch {
	case d.Dst.String() == own:
		dir = "in"
	case d.Src.String() == own:
		dir = "out"
	default:
		return "stray " + d.Src.String() + ">" + d.Dst.String() + " " + what
	}
	return dir + " " + proto + " " + what + " " + d.CallID
}

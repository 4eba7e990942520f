package sipnet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// retxStack starts a stack on loopback with the handlers register sets.
func retxStack(t *testing.T, m *metrics.Metrics, register func(*Stack)) *Stack {
	t.Helper()
	st, err := New(Config{Host: "127.0.0.1", Addr: "127.0.0.1:0", Metrics: m, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	register(st)
	if err := st.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func retxCount(t *testing.T, m *metrics.Metrics, direction, method, message string) int {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "strait_sip_retransmissions_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range mt.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["direction"] == direction && l["method"] == method && l["message"] == message {
				return int(mt.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// What counts as a retransmission: the same bytes again in the same
// direction within the window; not another message, not the same bytes
// the other way, not a keepalive, not a message from long ago.
func TestRetransmissionsObserve(t *testing.T) {
	invite := []byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n")
	other := []byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nCSeq: 1 INVITE\r\n\r\n")
	ringing := []byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq:  1   INVITE\r\n\r\n")
	m := metrics.New()
	r := newRetransmissions(m)
	for i, c := range []struct {
		data   []byte
		in     bool
		repeat bool
	}{
		{invite, false, false}, {invite, false, true}, {invite, true, false}, {invite, true, true},
		{other, false, false}, {ringing, true, false}, {ringing, true, true}, {invite, false, true},
		{[]byte("\r\n\r\n"), true, false}, {[]byte("\r\n\r\n"), true, false},
	} {
		if got := r.observe(c.data, c.in); got != c.repeat {
			t.Errorf("step %d: repeat %v, want %v", i, got, c.repeat)
		}
	}
	for _, c := range []struct {
		dir, msg string
		want     int
	}{{"out", "request", 2}, {"in", "request", 1}, {"in", "response", 1}, {"out", "response", 0}} {
		if got := retxCount(t, m, c.dir, "INVITE", c.msg); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.dir, c.msg, got, c.want)
		}
	}
	// Seen longer ago than any transaction lasts: new again.
	for i := range r.buckets {
		for w := range retransmitWays {
			r.buckets[i].at[w] -= uint32(retransmitWindow.Milliseconds()) + 1
		}
	}
	if r.observe(other, false) {
		t.Error("a message seen 40 s ago counted as a retransmission")
	}
	if r.observe(other, false) != true {
		t.Error("the same message again, at once, not counted")
	}
	if method, req := sipMethod([]byte("SIP/2.0 200 OK\r\nl: 0\r\ncseq: 7 BYE\r\n\r\n")); method != "BYE" || req {
		t.Errorf("sipMethod: %q %v", method, req)
	}
}

// The table is bounded: far more distinct messages than it holds leave
// its size unchanged, and an unrelated message is never a repeat.
func TestRetransmissionsBounded(t *testing.T) {
	r := newRetransmissions(nil)
	for i := range 2 * retransmitBuckets * retransmitWays {
		if r.observe(fmt.Appendf(nil, "OPTIONS sip:x SIP/2.0\r\nCSeq: %d OPTIONS\r\n\r\n", i), true) {
			t.Fatalf("message %d: a false repeat", i)
		}
	}
	if len(r.buckets) != retransmitBuckets {
		t.Fatal("the table grew")
	}
}

// Looking at a datagram allocates nothing (it runs on every UDP message).
func TestRetransmissionsObserveAllocs(t *testing.T) {
	r := newRetransmissions(metrics.New())
	msg := []byte(strings.Repeat("INVITE sip:b@x SIP/2.0\r\n", 40))
	i := 0
	if n := testing.AllocsPerRun(1000, func() { msg[30] = byte(i); i++; r.observe(msg, false) }); n != 0 {
		t.Fatalf("%v allocations per message", n)
	}
}

func BenchmarkRetransmissionsObserve(b *testing.B) {
	r := newRetransmissions(metrics.New())
	msg := []byte(strings.Repeat("INVITE sip:b@x SIP/2.0\r\n", 40)) // about 1 KB
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		msg[30], msg[31] = byte(i), byte(i>>8)
		r.observe(msg, false)
	}
}

// An unresponsive PBX over UDP: Strait's INVITE client transaction
// re-sends on Timer A (T1, then 2*T1, ...; RFC 3261 section 17.1.1.2), and
// every copy after the first is counted, exactly as many as the PBX got.
func TestRetransmissionsOutTimerA(t *testing.T) {
	m := metrics.New()
	st := retxStack(t, m, func(*Stack) {})
	pbx, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1"})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1"}, Params: sip.HeaderParams{{K: "tag", V: "a1"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader("timer-a@test")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	st.Prepare(req, Route{Transport: UDP, Dest: pbx.LocalAddr().String()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx, err := st.Transaction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var copies []string
	buf := make([]byte, 4096)
	pbx.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(copies) < 3 { // at 0, T1 and 3*T1
		n, _, err := pbx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the PBX got %d copies: %v", len(copies), err)
		}
		copies = append(copies, string(buf[:n]))
	}
	tx.Terminate() // stops Timer A
	<-tx.Done()
	copies = append(copies, readAll(pbx, 200*time.Millisecond)...)
	for _, c := range copies[1:] {
		if c != copies[0] {
			t.Fatalf("a retransmission differs from the request:\n%s\n%s", copies[0], c)
		}
	}
	if got := retxCount(t, m, "out", "INVITE", "request"); got != len(copies)-1 {
		t.Fatalf("counted %d retransmissions, the PBX got %d copies", got, len(copies))
	}
	if got := retxCount(t, m, "in", "INVITE", "request"); got != 0 {
		t.Fatalf("%d counted in", got)
	}
	t.Logf("the PBX got %d copies; %d retransmissions counted", len(copies), len(copies)-1)
}

// A UAC that re-sends its INVITE after Strait's 100 Trying (as one does
// when the 100 is lost): the repeat is counted in, and the 100 Strait's
// server transaction re-sends in answer (RFC 3261 section 17.2.1) out.
func TestRetransmissionsInInvite(t *testing.T) {
	m := metrics.New()
	st := retxStack(t, m, func(st *Stack) {
		st.Server.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			st.Respond(tx, req, 100, "", nil) // then nothing: the callee never answers
		})
	})
	uac, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uac.Close()
	invite := fmt.Sprintf("INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-retx-1\r\n"+
		"From: <sip:a@x>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: retx-in@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:a@%s>\r\nContent-Length: 0\r\n\r\n", uac.LocalAddr(), uac.LocalAddr())
	to, _ := net.ResolveUDPAddr("udp", st.UDPAddr())
	trying := func() {
		t.Helper()
		buf := make([]byte, 4096)
		uac.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := uac.ReadFrom(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 100 ") {
			t.Fatalf("no 100 Trying: %v %q", err, buf[:n])
		}
	}
	uac.WriteTo([]byte(invite), to)
	trying()
	uac.WriteTo([]byte(invite), to) // the same INVITE again
	trying()                        // the same 100 again
	if got := retxCount(t, m, "in", "INVITE", "request"); got != 1 {
		t.Errorf("in: %d, want 1", got)
	}
	if got := retxCount(t, m, "out", "INVITE", "response"); got != 1 {
		t.Errorf("out: %d, want 1", got)
	}
}

// A sipgo UAC whose MESSAGE Strait answers late re-sends it on Timer E
// (RFC 3261 section 17.1.2.2); Strait counts the repeat, then answers.
func TestRetransmissionsInTimerE(t *testing.T) {
	m := metrics.New()
	st := retxStack(t, m, func(st *Stack) {
		st.Server.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			deadline := time.Now().Add(5 * time.Second)
			for retxCount(t, m, "in", "MESSAGE", "request") == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // awaiting the UAC's Timer E
			}
			st.Respond(tx, req, 200, "", nil)
		})
	})
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slog.New(slog.DiscardHandler))))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: st.Port(UDP)})
	req.SetBody([]byte("hello"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cli.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %v %v", res, err)
	}
	if got := retxCount(t, m, "in", "MESSAGE", "request"); got < 1 || got > 3 {
		t.Fatalf("in: %d, want the UAC's Timer E repeats (1-3)", got)
	}
}

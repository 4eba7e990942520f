package sipnet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// A UDP server transaction waits out 64*T1 after its final response to
// absorb retransmissions (RFC 3261 sections 17.2.1 and 17.2.2, RFC 6026
// section 7.1); third_party/sipgo's keeps only what that needs, not the
// request (its headers and body) nor, for an accepted INVITE, the 2xx:
// at 1 000 calls/s that was most of the live heap. The request is
// collected while the transaction still answers its retransmissions as
// the RFCs say: a non-INVITE's or a rejected INVITE's final response is
// sent again byte for byte, an accepted INVITE's repeat is absorbed (the
// 2xx is the UAS core's to repeat, section 13.3.1.4) and never reaches
// the handler again.
func TestServerTxReleasesRequest(t *testing.T) {
	for _, tc := range []struct {
		method string
		code   int
		repeat bool // the retransmitted request gets the final response again
	}{
		{sip.BYE.String(), 200, true},
		{sip.INVITE.String(), 486, true},
		{sip.INVITE.String(), 200, false},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.method, tc.code), func(t *testing.T) {
			var seen atomic.Pointer[weak.Pointer[sip.Request]]
			var calls atomic.Int32
			handle := func(req *sip.Request, tx sip.ServerTransaction) {
				calls.Add(1)
				w := weak.Make(req)
				seen.Store(&w)
				var body []byte
				if tc.code == 200 && req.IsInvite() {
					body = []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
				}
				if err := respondPlain(tx, req, tc.code, body); err != nil {
					t.Error(err)
				}
			}
			st := retxStack(t, metrics.New(), func(st *Stack) {
				st.Server.OnInvite(handle)
				st.Server.OnBye(handle)
			})
			uac, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer uac.Close()
			msg := fmt.Sprintf("%s sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-rel-%s-%d\r\n"+
				"From: <sip:a@x>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=2\r\nCall-ID: rel-%s-%d@test\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\n"+
				"Contact: <sip:a@%s>\r\nUser-Agent: txrelease-test\r\nContent-Length: 0\r\n\r\n",
				tc.method, uac.LocalAddr(), tc.method, tc.code, tc.method, tc.code, tc.method, uac.LocalAddr())
			to, _ := net.ResolveUDPAddr("udp", st.UDPAddr())
			buf := make([]byte, 8192)
			// final reads responses until the final one (the INVITE's 100 may come first).
			final := func(wait time.Duration) (string, bool) {
				t.Helper()
				uac.SetReadDeadline(time.Now().Add(wait))
				for {
					n, _, err := uac.ReadFrom(buf)
					if err != nil {
						return "", false
					}
					if s := string(buf[:n]); !strings.HasPrefix(s, "SIP/2.0 1") {
						return s, true
					}
				}
			}
			uac.WriteTo([]byte(msg), to)
			first, ok := final(5 * time.Second)
			if !ok || !strings.HasPrefix(first, fmt.Sprintf("SIP/2.0 %d ", tc.code)) {
				t.Fatalf("no %d: %q", tc.code, first)
			}
			w := seen.Load()
			if w == nil {
				t.Fatal("handler not called")
			}
			collected := false
			for range 20 {
				runtime.GC()
				if w.Value() == nil {
					collected = true
					break
				}
			}
			if !collected {
				t.Fatal("the request is still held after its final response")
			}
			uac.WriteTo([]byte(msg), to) // the same request again
			again, ok := final(300 * time.Millisecond)
			switch {
			case tc.repeat && again != first:
				t.Fatalf("the repeat got %q, want the final response again, %q", again, first)
			case !tc.repeat && ok:
				t.Fatalf("the accepted INVITE's repeat got %q, want it absorbed", again)
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("handler called %d times, want 1", n)
			}
		})
	}
}

// respondPlain answers req on tx with a response built by sipgo alone.
func respondPlain(tx sip.ServerTransaction, req *sip.Request, code int, body []byte) error {
	res := sip.NewResponseFromRequest(req, code, "", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	return tx.Respond(res)
}

// The client side: once an INVITE's 2xx is passed up, the client
// transaction waits for Timer M (64*T1, RFC 6026 section 7.2) only to pass
// retransmitted 2xx responses up; third_party/sipgo's keeps neither the
// INVITE nor the 2xx meanwhile.
func TestClientTxReleasesInvite(t *testing.T) {
	uas, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slog.New(slog.DiscardHandler))))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: uas.LocalAddr().(*net.UDPAddr).Port})
	req.SetBody([]byte("v=0\r\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := cli.TransactionRequest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	retransmitted := make(chan *sip.Response, 1)
	tx.OnRetransmission(func(r *sip.Response) { retransmitted <- r })
	invite := weak.Make(req)
	req = nil

	buf := make([]byte, 8192)
	uas.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := uas.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	ok := sip.NewResponseFromRequest(msg.(*sip.Request), 200, "OK", nil).String()
	uas.WriteTo([]byte(ok), from)
	select {
	case res := <-tx.Responses():
		if res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
	case <-ctx.Done():
		t.Fatal("no 200")
	}
	collected := false
	for range 50 { // the 2xx is passed up before the transaction lets go of the INVITE
		runtime.GC()
		if invite.Value() == nil {
			collected = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !collected {
		t.Fatal("the accepted client transaction still holds its INVITE")
	}
	uas.WriteTo([]byte(ok), from) // the UAS's 2xx again
	select {
	case res := <-retransmitted:
		if res.StatusCode != 200 {
			t.Fatalf("retransmission: %d", res.StatusCode)
		}
	case <-ctx.Done():
		t.Fatal("the retransmitted 2xx did not reach the TU")
	}
}

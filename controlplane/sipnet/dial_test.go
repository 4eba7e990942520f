package sipnet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// countingListener accepts TCP connections on addr and counts them; each
// connection's first message goes to got.
func countingListener(t *testing.T, addr string) (net.Listener, *atomic.Int64, chan string) {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	got := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				got <- line
			}()
		}
	}()
	return l, &n, got
}

func dropped(t *testing.T, m *metrics.Metrics, transport, reason string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "strait_sip_dropped_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["transport"] == transport && labels["reason"] == reason {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func startStack(t *testing.T, m *metrics.Metrics) *Stack {
	t.Helper()
	st, err := New(Config{Host: "127.0.0.1", Addr: "127.0.0.1:0", Metrics: m, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	st.Server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		st.Respond(tx, req, 200, "", nil)
	})
	if err := st.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A request whose TCP connection is gone before its server transaction
// exists gets no response, and above all no connection toward its Via
// sent-by (RFC 3261 section 18.2.2: the existing connection, or nothing).
func TestServerTransactionsNeverDial(t *testing.T) {
	m := metrics.New()
	st := startStack(t, m)
	internal, dialled, _ := countingListener(t, "127.0.0.3:0")
	sipAddr := fmt.Sprintf("127.0.0.1:%d", st.Port(TCP))

	deadline := time.Now().Add(10 * time.Second)
	for i := 0; dropped(t, m, "tcp", metrics.DropDialRefused) == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d connections no dial was refused (and %d were made)", i, dialled.Load())
		}
		c, err := net.Dial("tcp4", sipAddr)
		if err != nil {
			t.Fatal(err)
		}
		var burst bytes.Buffer
		for j := range 20 {
			fmt.Fprintf(&burst, "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-%d-%d\r\n"+
				"From: <sip:a@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c%d-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"+
				"Content-Length: 0\r\n\r\n", internal.Addr(), i, j, i, j)
		}
		c.Write(burst.Bytes())
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("Strait connected %d times to a Via sent-by", n)
	}
}

// A response on a live connection still goes back on it.
func TestServerTransactionsAnswerOnTheirConnection(t *testing.T) {
	m := metrics.New()
	st := startStack(t, m)
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", st.Port(TCP)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-live\r\n"+
		"From: <sip:a@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: live\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"+
		"Content-Length: 0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("response on the request's connection: %q %v", line, err)
	}
}

// Requests Strait sends itself (Transaction, Write) still open the
// connections they need: toward a PBX over TCP, for instance.
func TestOwnRequestsDial(t *testing.T) {
	m := metrics.New()
	st := startStack(t, m)
	for _, method := range []sip.RequestMethod{sip.OPTIONS, sip.ACK} {
		pbx, _, got := countingListener(t, "127.0.0.4:0")
		req := sip.NewRequest(method, sip.Uri{Scheme: "sip", Host: "127.0.0.4"})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "strait", Host: "127.0.0.1"}, Params: sip.NewParams()})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.4"}, Params: sip.NewParams()})
		cid := sip.CallIDHeader("own-" + string(method))
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
		st.Prepare(req, Route{Transport: TCP, Dest: pbx.Addr().String()})
		if method == sip.ACK {
			if err := st.Write(req); err != nil {
				t.Fatalf("Write: %v", err)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			tx, err := st.Transaction(ctx, req)
			if err != nil {
				cancel()
				t.Fatalf("Transaction: %v", err)
			}
			defer tx.Terminate()
			defer cancel()
		}
		select {
		case line := <-got:
			if !strings.HasPrefix(line, string(method)+" ") {
				t.Fatalf("the PBX got %q, want %s", line, method)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never reached the PBX over TCP", method)
		}
	}
	if n := dropped(t, m, "tcp", metrics.DropDialRefused); n != 0 {
		t.Fatalf("%g of Strait's own dials refused", n)
	}
}

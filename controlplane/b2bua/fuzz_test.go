package b2bua

import (
	"log/slog"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// fakeTx is a server transaction that records what it was answered.
type fakeTx struct {
	done chan struct{}
	res  []*sip.Response
}

func newFakeTx() *fakeTx                             { return &fakeTx{done: make(chan struct{})} }
func (f *fakeTx) Terminate()                         {}
func (f *fakeTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (f *fakeTx) Done() <-chan struct{}              { return f.done }
func (f *fakeTx) Err() error                         { return nil }
func (f *fakeTx) Respond(r *sip.Response) error      { f.res = append(f.res, r); return nil }
func (f *fakeTx) Acks() <-chan *sip.Request          { return nil }
func (f *fakeTx) OnCancel(sip.FnTxCancel) bool       { return true }
func (f *fakeTx) final() *sip.Response {
	for i := len(f.res) - 1; i >= 0; i-- {
		if f.res[i].StatusCode >= 200 {
			return f.res[i]
		}
	}
	return nil
}

// FuzzRequests feeds arbitrary SIP requests to the engine's handlers (a
// standalone engine in open mode, no bindings and no dataplane node): every
// request that needs an answer gets a final one, nothing panics, and no
// call or dialog is left behind.
func FuzzRequests(f *testing.F) {
	st, err := sipnet.New(sipnet.Config{Host: "127.0.0.1", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	reg := registrar.NewRegistry()
	pool := dpool.New(slog.New(slog.DiscardHandler))
	defer pool.Close()
	e := New(Config{Stack: st, Registry: reg, Registrar: registrar.New(registrar.Config{Stack: st, Registry: reg}),
		Pool:        pool,
		TrunkPolicy: sdp.DefaultPolicy(), Log: slog.New(slog.DiscardHandler)})
	defer e.Close()
	for _, s := range []string{
		"INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@x>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
		"BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: c2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK3\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@y>\r\nCall-ID: c3\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK4\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c4\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
		"SUBSCRIBE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK5\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@y>\r\nCall-ID: c5\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok || req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.Via() == nil {
			return // sipgo's transaction layer never hands these to a handler
		}
		req.SetTransport("UDP")
		req.SetSource("10.0.0.1:5060")
		tx := newFakeTx()
		switch req.Method {
		case sip.INVITE:
			e.onInvite(req, tx)
		case sip.ACK:
			e.onAck(req, tx)
			return
		case sip.OPTIONS:
			e.onOptions(req, tx)
		case sip.MESSAGE, sip.NOTIFY, sip.SUBSCRIBE:
			e.onOutOfDialog(req, tx)
		case sip.CANCEL:
			e.onCancel(req, tx)
		default:
			e.onInDialog(req, tx)
		}
		if tx.final() == nil {
			t.Fatalf("%s got no final response", req.Method)
		}
		if n := len(e.Calls()); n != 0 {
			t.Fatalf("%d calls left", n)
		}
	})
}

package sip

// Strait: what a transaction keeps once it only waits out its timers
// (ServerTx.release, ClientTx.actPassupAccept).

import (
	"bytes"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/fakes"
	"github.com/stretchr/testify/require"
)

// releaseTestTx is a UDP server transaction for req whose responses are
// written to the returned buffer, with its timers long enough to inspect
// its waiting state.
func releaseTestTx(t *testing.T, req *Request) (*ServerTx, *bytes.Buffer) {
	t.Helper()
	out := &bytes.Buffer{}
	conn := &UDPConnection{PacketConn: &fakes.UDPConn{
		Reader:  &bytes.Buffer{},
		Writers: map[string]io.Writer{"127.0.0.2:5060": out},
	}}
	conn.Ref(1)
	tx := NewServerTx("release-test", req, conn, slog.Default())
	require.NoError(t, tx.Init())
	tx.timer_j_time = time.Hour
	t.Cleanup(tx.Terminate)
	return tx, out
}

// watch returns a flag set once p is garbage collected (the module is
// go1.23: no weak pointers).
func watch[T any](p *T) *atomic.Bool {
	gone := new(atomic.Bool)
	runtime.SetFinalizer(p, func(*T) { gone.Store(true) })
	return gone
}

// collected reports whether the object watch was given was garbage
// collected, running the collector (finalizers run on their own goroutine).
func collected(gone *atomic.Bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		if gone.Load() {
			return true
		}
		time.Sleep(10 * time.Millisecond) // the finalizer goroutine's turn
	}
	return false
}

func TestServerTxReleaseNonInvite(t *testing.T) {
	req := testCreateRequest(t, "BYE", "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	tx, out := releaseTestTx(t, req)
	origin := watch(req)
	require.NoError(t, tx.Respond(NewResponseFromRequest(req, StatusOK, "OK", nil)))
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.stateCompleted))
	require.Nil(t, tx.Origin())
	first := out.String()
	require.True(t, strings.HasPrefix(first, "SIP/2.0 200 OK"), first)

	// A retransmitted request gets the final response again (RFC 3261
	// section 17.2.2), from a copy of the request parsed anew.
	again := testCreateRequest(t, "BYE", "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	req = nil
	require.True(t, collected(origin), "the completed transaction still holds its request")
	out.Reset()
	require.NoError(t, tx.Receive(again))
	require.Equal(t, first, out.String())

	// The handler returning leaves it to wait out Timer J.
	tx.TerminateGracefully()
	select {
	case <-tx.Done():
		t.Fatal("a finalized UDP transaction must wait out Timer J")
	default:
	}
}

func TestServerTxReleaseInviteAccepted(t *testing.T) {
	req, _, _ := testCreateInvite(t, "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	tx, out := releaseTestTx(t, req)
	origin := watch(req)
	ok := NewResponseFromRequest(req, StatusOK, "OK", []byte("v=0\r\n"))
	answer := watch(ok)
	require.NoError(t, tx.Respond(ok))
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateAccepted))
	require.Nil(t, tx.Origin())
	require.True(t, strings.HasPrefix(out.String(), "SIP/2.0 200 OK"), out.String())

	// The 2xx the TU sends again is passed to the transport (RFC 6026
	// section 7.1) and not kept either.
	out.Reset()
	require.NoError(t, tx.Respond(ok))
	require.True(t, strings.HasPrefix(out.String(), "SIP/2.0 200 OK"), out.String())

	again := req.Clone()
	req, ok = nil, nil
	require.True(t, collected(origin), "the accepted transaction still holds its INVITE")
	require.True(t, collected(answer), "the accepted transaction still holds its 2xx")

	// A retransmitted INVITE is absorbed: no answer, no new transaction.
	out.Reset()
	require.NoError(t, tx.Receive(again))
	require.Empty(t, out.String())
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateAccepted))

	tx.TerminateGracefully()
	select {
	case <-tx.Done():
		t.Fatal("an accepted UDP transaction must wait out Timer L")
	default:
	}
}

func TestServerTxReleaseInviteRejected(t *testing.T) {
	req, _, _ := testCreateInvite(t, "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	tx, out := releaseTestTx(t, req)
	tx.timer_g_time = time.Hour
	origin := watch(req)
	busy := NewResponseFromRequest(req, StatusBusyHere, "Busy Here", nil)
	require.NoError(t, tx.Respond(busy))
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateCompleted))
	first := out.String()
	require.True(t, strings.HasPrefix(first, "SIP/2.0 486 Busy Here"), first)

	// Completed answers a retransmitted INVITE with its final response
	// again (RFC 3261 section 17.2.1): that response stays, the INVITE goes.
	again := req.Clone()
	ack := req.Clone()
	ack.Method = ACK
	ack.CSeq().MethodName = ACK
	req = nil
	require.True(t, collected(origin), "the completed transaction still holds its INVITE")
	out.Reset()
	require.NoError(t, tx.Receive(again))
	require.Equal(t, first, out.String())

	require.NoError(t, tx.Receive(ack))
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateConfirmed))
	tx.fsmMu.Lock()
	resp := tx.fsmResp
	tx.fsmMu.Unlock()
	require.Nil(t, resp, "a confirmed transaction keeps no response")
}

func TestServerTxCancelBeforeFinal(t *testing.T) {
	req, _, _ := testCreateInvite(t, "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	tx, out := releaseTestTx(t, req)
	tx.timer_g_time = time.Hour
	cancelled := make(chan struct{}, 1)
	require.True(t, tx.OnCancel(func(*Request) { cancelled <- struct{}{} }))
	cancel := req.Clone()
	cancel.Method = CANCEL
	cancel.CSeq().MethodName = CANCEL
	require.NoError(t, tx.Receive(cancel))
	<-cancelled
	require.True(t, strings.HasPrefix(out.String(), "SIP/2.0 487 Request Terminated"), out.String())
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateCompleted))
	require.Nil(t, tx.Origin())
	tx.TerminateGracefully()
	select {
	case <-tx.Done():
		t.Fatal("a cancelled UDP INVITE must wait for its ACK or Timer H")
	default:
	}
}

func TestClientTxReleaseInviteAccepted(t *testing.T) {
	req, _, _ := testCreateInvite(t, "sip:bob@127.0.0.2:5060", "UDP", "127.0.0.2:5060")
	out := &bytes.Buffer{}
	conn := &UDPConnection{PacketConn: &fakes.UDPConn{
		Reader:  &bytes.Buffer{},
		Writers: map[string]io.Writer{"127.0.0.2:5060": out},
	}}
	conn.Ref(1)
	tx := NewClientTx("release-test", req, conn, slog.Default())
	require.NoError(t, tx.Init())
	t.Cleanup(tx.Terminate)
	origin := watch(req)
	retransmitted := make(chan *Response, 1)
	require.True(t, tx.OnRetransmission(func(r *Response) { retransmitted <- r }))

	ok := NewResponseFromRequest(req, StatusOK, "OK", []byte("v=0\r\n"))
	again := ok.Clone()
	answer := watch(ok)
	done := make(chan struct{})
	go func() { tx.Receive(ok); close(done) }()
	require.Same(t, ok, <-tx.Responses())
	<-done
	require.NoError(t, compareFunctions(tx.currentFsmState(), tx.inviteStateAccepted))
	require.Nil(t, tx.Origin())

	req, ok = nil, nil
	require.True(t, collected(origin), "the accepted transaction still holds its INVITE")
	require.True(t, collected(answer), "the accepted transaction still holds its 2xx")

	// A retransmitted 2xx still reaches the TU (RFC 6026 section 7.2).
	tx.Receive(again)
	require.Same(t, again, <-retransmitted)
}

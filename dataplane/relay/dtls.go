package relay

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/strait-sbc/strait/dataplane/dtlsleg"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// dtlsParams are what the control plane negotiated for a leg's handshake.
type dtlsParams struct {
	role      dtlsleg.Role
	algorithm string
	value     string
}

func paramsOf(spec *pb.WebRTCSpec) *dtlsParams {
	p := &dtlsParams{
		algorithm: spec.GetRemoteFingerprint().GetAlgorithm(),
		value:     spec.GetRemoteFingerprint().GetValue(),
	}
	switch spec.GetDtlsRole() {
	case pb.DTLSRole_DTLS_ROLE_CLIENT:
		p.role = dtlsleg.Client
	case pb.DTLSRole_DTLS_ROLE_SERVER:
		p.role = dtlsleg.Server
	}
	return p
}

func (p *dtlsParams) ready() bool { return p != nil && p.role != 0 && p.value != "" }

// redo reports whether a leg whose handshake ran with p must redo it with
// np: a new fingerprint or role means the peer has a new DTLS association
// (RFC 5763 section 5).
func (p *dtlsParams) redo(np *dtlsParams) bool {
	if !p.ready() {
		return false
	}
	return np.role != p.role || !strings.EqualFold(np.value, p.value) || !strings.EqualFold(np.algorithm, p.algorithm)
}

// dtlsState is a leg's handshake: the Transport workers deliver to, the
// goroutine running it, and the parameters it runs with.
type dtlsState struct {
	transport atomic.Pointer[dtlsleg.Transport] // read by workers
	params    atomic.Pointer[dtlsParams]

	mu     sync.Mutex // guards the fields below and serialises start/stop
	cancel context.CancelFunc
	conn   *dtls.Conn
	done   chan struct{}
	// started is set once an association was attempted with the current
	// parameters: a leg does not handshake twice unless an update brings
	// new DTLS parameters (stopDTLS clears it).
	started bool
}

// deliverDTLS hands a DTLS datagram to the leg's handshake goroutine.
func (l *Leg) deliverDTLS(pkt []byte) {
	t := l.dtls.transport.Load()
	if t == nil || !t.Deliver(pkt) {
		l.ctr.drop[pb.DropNotReady].Add(1)
	}
}

// startDTLS starts the leg's handshake goroutine once the leg has a path
// and its DTLS role and the peer's fingerprint are known. It is called from
// a worker (first valid check) or from an update, whichever comes last.
func (e *Engine) startDTLS(l *Leg) {
	params := l.dtls.params.Load()
	p := l.path.Load()
	if !params.ready() || p == nil || l.sess.closed.Load() {
		return
	}
	l.dtls.mu.Lock()
	defer l.dtls.mu.Unlock()
	if l.dtls.started || l.sess.closed.Load() {
		return
	}
	l.dtls.started = true
	sock := l.group.socks[0] // any worker's socket of the port sends from it
	t := dtlsleg.NewTransport(sock.Local, p.addr, func(b []byte) error {
		p := l.path.Load()
		if p == nil {
			return errNoPath
		}
		return sock.SendTo(b, p.addr)
	})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	l.dtls.cancel, l.dtls.done = cancel, done
	l.dtls.transport.Store(t)
	e.wg.Add(1)
	go e.runDTLS(ctx, cancel, l, t, params, done)
}

var errNoPath = errors.New("relay: leg has no ICE path")

// runDTLS is a leg's handshake goroutine: handshake, install SRTP keys,
// then keep reading so a retransmitted final flight is answered.
func (e *Engine) runDTLS(ctx context.Context, cancel context.CancelFunc, l *Leg, t *dtlsleg.Transport, p *dtlsParams, done chan struct{}) {
	defer e.wg.Done()
	defer close(done)
	// However it ends, let go of everything the association held: the
	// Transport (workers then drop the leg's DTLS datagrams) and the
	// context, whose registration in the engine's context would otherwise
	// keep pion's connection alive for as long as the node runs.
	defer func() {
		l.dtls.mu.Lock()
		if l.dtls.transport.Load() == t {
			l.dtls.transport.Store(nil)
			l.dtls.conn, l.dtls.cancel = nil, nil
		}
		l.dtls.mu.Unlock()
		cancel()
	}()
	res, err := dtlsleg.Handshake(ctx, t, dtlsleg.Config{
		Certificate:       e.cfg.Certificate,
		Role:              p.role,
		RemoteAlgorithm:   p.algorithm,
		RemoteFingerprint: p.value,
		Timeout:           e.cfg.DTLSTimeout,
	})
	if err != nil {
		t.Close()
		if ctx.Err() != nil {
			return // the leg was deleted or its DTLS reset: not a failure
		}
		l.state.Store(int32(pb.LegState_LEG_STATE_FAILED))
		e.log.Info("DTLS handshake failed", "session", l.sess.ID, "leg", l.index, "err", err)
		e.event(l, pb.EventType_EVENT_TYPE_DTLS_FAILED, err.Error())
		return
	}
	keys := res.SRTP.Keys
	dec, enc, err := newContexts(res.SRTP.Profile, keys.LocalMasterKey, keys.LocalMasterSalt, keys.RemoteMasterKey, keys.RemoteMasterSalt)
	if err != nil {
		res.Conn.Close()
		t.Close()
		l.state.Store(int32(pb.LegState_LEG_STATE_FAILED))
		e.event(l, pb.EventType_EVENT_TYPE_DTLS_FAILED, err.Error())
		return
	}
	l.setKeys(nil, dec, enc)
	if k, err := keysOf(res.SRTP.Profile, append(bytes.Clone(keys.LocalMasterKey), keys.LocalMasterSalt...),
		append(bytes.Clone(keys.RemoteMasterKey), keys.RemoteMasterSalt...)); err == nil {
		l.keys.Store(k)
	}
	name := dtlsleg.ProfileName(res.SRTP.Profile)
	l.profile.Store(&name)
	l.dtls.mu.Lock()
	l.dtls.conn = res.Conn
	l.dtls.mu.Unlock()
	l.state.Store(int32(pb.LegState_LEG_STATE_CONNECTED))
	e.event(l, pb.EventType_EVENT_TYPE_DTLS_CONNECTED, name)
	// Keep the association readable for a while, so that a peer whose copy
	// of our last flight was lost gets it again when it retransmits its own
	// (RFC 6347 section 4.2.4). After that nothing more is expected on DTLS
	// (WebRTC without data channels sends no application data), so the
	// Transport is closed: pion's two goroutines and its handshake state go
	// (nothing is sent to the peer; the SRTP keys stay), which keeps a
	// session's memory small. A new association needs an update with new
	// DTLS parameters anyway.
	linger := time.AfterFunc(e.cfg.DTLSLinger, func() { t.Close() })
	_ = dtlsleg.Serve(res.Conn)
	linger.Stop()
	t.Close()
	res.Conn.Close() // the Transport is closed: no close_notify goes out
}

// stopDTLS ends the leg's handshake goroutine and forgets its keys (for
// deletion, or before a new handshake with new parameters).
func (e *Engine) stopDTLS(l *Leg, forgetKeys bool) {
	l.dtls.mu.Lock()
	cancel, conn, done, t := l.dtls.cancel, l.dtls.conn, l.dtls.done, l.dtls.transport.Load()
	l.dtls.cancel, l.dtls.conn, l.dtls.done = nil, nil, nil
	l.dtls.transport.Store(nil)
	l.dtls.started = false
	l.dtls.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if t != nil && e.quiet.Load() {
		t.Close() // first: the association's close_notify goes nowhere
	}
	if conn != nil {
		conn.Close()
	}
	if t != nil {
		t.Close()
	}
	if done != nil {
		<-done
	}
	if forgetKeys {
		l.setKeys(nil, nil, nil)
		l.profile.Store(nil)
		l.keys.Store(nil)
	}
}

// mediaStarted raises MEDIA_STARTED once per leg.
func (l *Leg) mediaStarted() {
	if l.started.CompareAndSwap(false, true) {
		l.sess.engine.event(l, pb.EventType_EVENT_TYPE_MEDIA_STARTED, "")
	}
}

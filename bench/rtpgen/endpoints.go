package rtpgen

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// Listen opens an Endpoint bound to addr (port 0: any).
func (e *Engine) Listen(addr netip.AddrPort) (*Endpoint, error) {
	idx := int(e.nextEp.Add(1) - 1)
	if idx >= MaxEndpoints {
		return nil, fmt.Errorf("rtpgen: more than %d endpoints", MaxEndpoints)
	}
	s, err := batchconn.Listen(addr, e.opt)
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{Sock: s, idx: idx}
	e.eps[idx].Store(ep)
	if err := e.toSink(sinkCmd{add: true, ep: ep}); err != nil {
		e.eps[idx].Store(nil)
		s.Close()
		return nil, err
	}
	return ep, nil
}

// CloseEndpoint stops serving ep and closes its socket. Its flows must be
// removed first.
func (e *Engine) CloseEndpoint(ep *Endpoint) {
	e.toSink(sinkCmd{ep: ep}) // the sink returns nothing of it after this
	e.sinkMu.Lock()           // the sink is not inside a round using ep
	e.eps[ep.idx].Store(nil)
	e.sinkMu.Unlock()
	ep.Sock.Close()
}

// sinkCmd asks the sink to start (add) or stop receiving on ep.
type sinkCmd struct {
	add  bool
	ep   *Endpoint
	done chan error
}

// toSink has the sink apply c between two rounds and waits for it; once
// the sink returned, it applies c itself (only a removal still matters).
func (e *Engine) toSink(c sinkCmd) error {
	c.done = make(chan error, 1)
	e.cmdMu.Lock()
	if e.sinkGone {
		e.cmdMu.Unlock()
		if c.add {
			return errors.New("rtpgen: engine closed")
		}
		return e.recv.Remove(c.ep.Sock)
	}
	e.sinkCmds = append(e.sinkCmds, c)
	e.cmdsReady.Store(true)
	e.recv.Wake() // under cmdMu: never after the sink's Loop is closed
	e.cmdMu.Unlock()
	return <-c.done
}

// applySinkCmds runs on the sink goroutine.
func (e *Engine) applySinkCmds() {
	e.cmdMu.Lock()
	cmds := e.sinkCmds
	e.sinkCmds = nil
	e.cmdsReady.Store(false)
	e.cmdMu.Unlock()
	for _, c := range cmds {
		if c.add {
			c.done <- e.recv.Add(c.ep.Sock, batchconn.Token(c.ep.idx))
		} else {
			c.done <- e.recv.Remove(c.ep.Sock)
		}
	}
}

// SetDecrypt gives ep the SRTP context that decrypts what arrives on it.
func (e *Engine) SetDecrypt(ep *Endpoint, dec *srtp.Context) {
	e.sinkMu.Lock()
	ep.dec = dec
	e.sinkMu.Unlock()
}

// NewFlow registers a flow from from to the relay address to, expected at
// sink. It sends nothing until Activate.
func (e *Engine) NewFlow(from *Endpoint, to netip.AddrPort, sink *Endpoint, c Codec) (*Flow, error) {
	id := e.nextID.Add(1)
	if id >= MaxFlows {
		return nil, fmt.Errorf("rtpgen: more than %d flows", MaxFlows)
	}
	f := &Flow{ID: id, From: from, To: to, Sink: sink, SSRC: 0x5eed0000 ^ id*2654435761, Codec: c,
		rtpSeq: uint16(id * 7919), ts: id * 104729}
	e.flows[id].Store(f)
	return f, nil
}

// Activate starts sending f, encrypted with enc when it is not nil. The
// first packet goes out at once (setup time counts to the first media), the
// rest at the flow rate.
func (e *Engine) Activate(f *Flow, enc *srtp.Context) {
	e.genMu.Lock()
	f.enc = enc
	if !f.active {
		f.active = true
		e.active = append(e.active, f)
		e.kick = append(e.kick, f)
	}
	e.genMu.Unlock()
}

// Kick sends one packet of an active flow at once, outside its rate (a
// setup waiting for the first packet through does not wait for a slow
// flow's next turn).
func (e *Engine) Kick(f *Flow) {
	e.genMu.Lock()
	if f.active {
		e.kick = append(e.kick, f)
	}
	e.genMu.Unlock()
}

// Remove stops flows. Their packets still in flight are recognised and
// ignored; their counts stay in the run's totals.
func (e *Engine) Remove(flows ...*Flow) {
	drop := make(map[*Flow]bool, len(flows))
	for _, f := range flows {
		drop[f] = true
	}
	e.genMu.Lock()
	keep := e.active[:0]
	for _, f := range e.active {
		if !drop[f] {
			keep = append(keep, f)
		}
	}
	clear(e.active[len(keep):])
	e.active = keep
	k := e.kick[:0]
	for _, f := range e.kick {
		if !drop[f] {
			k = append(k, f)
		}
	}
	e.kick = k
	for _, f := range flows {
		f.active = false
	}
	e.genMu.Unlock()
	e.sinkMu.Lock()
	for _, f := range flows {
		f.removed = true // kept, so that packets still in flight are known
	}
	e.sinkMu.Unlock()
}

// SetRate sets each active flow's packet rate (cadence: 50 for 20 ms
// packets). 0 stops sending.
func (e *Engine) SetRate(perFlowPPS float64) {
	e.genMu.Lock()
	e.perFlowPPS = perFlowPPS
	e.credit = 0
	e.last = e.Now()
	e.genMu.Unlock()
}

// ActiveFlows is the number of flows being sent.
func (e *Engine) ActiveFlows() int {
	e.genMu.Lock()
	defer e.genMu.Unlock()
	return len(e.active)
}

// Totals are all packets sent and received (any flow, any time), for a
// progress line.
func (e *Engine) Totals() (sent, received uint64) { return e.totalSent.Load(), e.totalRecv.Load() }

// Close stops the goroutines and closes every socket.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.recv.Stop()
	e.wg.Wait()
	e.recv.Close()
	e.send.Close()
	for i := range e.eps {
		if ep := e.eps[i].Load(); ep != nil {
			ep.Sock.Close()
		}
	}
	return nil
}

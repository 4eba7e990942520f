package rtpgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/strait-sbc/strait/bench/payload"
	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/demux"
)

// sink is the receive goroutine.
func (e *Engine) sink() {
	defer e.wg.Done()
	err := e.recv.Bind()
	for err == nil {
		var msgs []batchconn.Message
		if msgs, err = e.recv.Next(); err != nil {
			break
		}
		now := e.Now()
		e.sinkMu.Lock()
		var got uint64
		for i := range msgs {
			m := &msgs[i]
			ep := e.eps[int(m.Token)].Load()
			switch {
			case ep == nil:
			case m.N <= 0:
				e.others++
			case e.handle(ep, m.Buf[:m.N], m.Addr, now):
				got++
			}
		}
		e.sinkMu.Unlock()
		e.totalRecv.Add(got)
		if e.cmdsReady.Load() {
			e.applySinkCmds()
		}
	}
	if !errors.Is(err, os.ErrClosed) && !e.closed.Load() {
		fmt.Fprintln(os.Stderr, "rtpgen: sink stopped:", err)
	}
	e.cmdMu.Lock()
	e.sinkGone = true
	e.cmdMu.Unlock()
	e.applySinkCmds() // anyone still waiting
}

// handle processes one datagram; it reports whether it was a media packet
// of a known flow. Called with sinkMu held.
func (e *Engine) handle(ep *Endpoint, pkt []byte, from netip.AddrPort, now int64) bool {
	switch demux.Classify(pkt) {
	case demux.RTP:
	case demux.RTCP:
		e.rtcp++
		return false
	case demux.STUN, demux.DTLS:
		if c := ep.control.Load(); c != nil {
			(*c)(pkt, from)
		} else {
			e.others++
		}
		return false
	default:
		e.others++
		return false
	}
	if ep.dec != nil {
		out, err := ep.dec.DecryptRTP(pkt, pkt, &ep.hdr)
		if err != nil {
			e.srtpFail++
			return false
		}
		pkt = out
	}
	hl := headerLen(pkt)
	if hl < 0 {
		e.strays++
		return false
	}
	body := pkt[hl:]
	id, _, _, ok := payload.Header(body)
	var f *Flow
	if ok && id < MaxFlows {
		f = e.flows[id].Load()
	}
	if f != nil && f.removed {
		e.late++
		return false
	}
	if f == nil || f.Sink != ep {
		e.strays++
		return false
	}
	_, seq, sent, err := payload.Check(body, f.Codec.Size)
	if err != nil {
		f.mismatches++
		return false
	}
	if f.firstArrival.Load() == 0 {
		f.firstArrival.Store(now)
	}
	if f.duplicate(seq) {
		f.dups++
		return false
	}
	f.recv++
	if e.inWindow(sent) {
		f.recvWin++
		e.hist.Record(now - sent)
		f.jitter.Add(sent, now)
	}
	return true
}

// duplicate records seq and reports whether it was seen before (within the
// 256 packets below the highest; older stragglers count as new).
func (f *Flow) duplicate(seq uint64) bool {
	switch {
	case f.recv == 0 || seq > f.highest:
		shift := seq - f.highest
		if f.recv == 0 || shift >= 256 {
			f.seen = [4]uint64{}
		} else {
			for ; shift > 0; shift-- {
				f.seen[3] = f.seen[3]<<1 | f.seen[2]>>63
				f.seen[2] = f.seen[2]<<1 | f.seen[1]>>63
				f.seen[1] = f.seen[1]<<1 | f.seen[0]>>63
				f.seen[0] <<= 1
			}
		}
		f.seen[0] |= 1
		f.highest = seq
		return false
	default:
		age := f.highest - seq
		if age >= 256 {
			return false
		}
		w, b := age/64, age%64
		if f.seen[w]&(1<<b) != 0 {
			return true
		}
		f.seen[w] |= 1 << b
		return false
	}
}

// headerLen is the length of an RTP header with its CSRCs and extension,
// or -1 if pkt is too short for it (RFC 3550 section 5.1).
func headerLen(pkt []byte) int {
	if len(pkt) < 12 {
		return -1
	}
	n := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < n+4 {
			return -1
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:n+4]))
	}
	if len(pkt) < n {
		return -1
	}
	return n
}

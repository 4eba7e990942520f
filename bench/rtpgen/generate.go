package rtpgen

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/strait-sbc/strait/bench/payload"
)

// generate is the generator goroutine.
func (e *Engine) generate() {
	defer e.wg.Done()
	if err := e.send.Bind(); err != nil {
		fmt.Fprintln(os.Stderr, "rtpgen: generator stopped:", err)
		return
	}
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	queued := 0
	for !e.closed.Load() {
		e.genMu.Lock()
		now := e.Now()
		n := len(e.kick)
		if e.perFlowPPS > 0 && len(e.active) > 0 {
			agg := e.perFlowPPS * float64(len(e.active))
			e.credit += float64(now-e.last) / 1e9 * agg
			e.credit = min(e.credit, agg*maxBurst.Seconds()+1)
			n += int(e.credit)
		}
		e.last = now
		if n == 0 {
			e.genMu.Unlock()
			time.Sleep(tick)
			continue
		}
		sent := 0
		for sent < n && len(e.active) > 0 {
			var f *Flow
			if len(e.kick) > 0 {
				f = e.kick[len(e.kick)-1]
				e.kick = e.kick[:len(e.kick)-1]
			} else {
				e.rr = (e.rr + 1) % len(e.active)
				f = e.active[e.rr]
				e.credit--
			}
			pkt, win, ok := e.build(f, bufs[queued], e.Now())
			if ok && e.send.Send(f.From.Sock, pkt, f.To, sendTag{f, win}) {
				queued++
			} else if ok {
				e.sendDropped(sendTag{f, win}, nil)
			}
			sent++
			if queued == batchSize {
				e.send.Flush()
				queued = 0
			}
		}
		if queued > 0 {
			e.send.Flush()
			queued = 0
		}
		e.totalSent.Add(uint64(sent))
		e.genMu.Unlock()
	}
}

// sendDropped counts a packet the harness's own socket refused: not the
// relay's loss. Called on the generator goroutine, with genMu held.
func (e *Engine) sendDropped(t sendTag, _ error) {
	e.sendDrops++
	if t.win {
		t.f.sentWin--
		e.sendDropWin++
	}
}

type sendTag struct {
	f   *Flow
	win bool
}

// build writes f's next packet into buf and encrypts it in place. Called
// with genMu held.
func (e *Engine) build(f *Flow, buf []byte, now int64) (pkt []byte, win, ok bool) {
	buf[0] = 0x80
	buf[1] = f.Codec.PT & 0x7f
	binary.BigEndian.PutUint16(buf[2:4], f.rtpSeq)
	binary.BigEndian.PutUint32(buf[4:8], f.ts)
	binary.BigEndian.PutUint32(buf[8:12], f.SSRC)
	n := 12 + f.Codec.Size
	payload.Write(buf[12:n], f.ID, f.seq, now)
	f.rtpSeq++
	f.ts += f.Codec.TSPerPkt
	f.seq++
	f.sent++
	pkt = buf[:n]
	if f.enc != nil {
		out, err := f.enc.EncryptRTP(buf[:0], buf[:n], &f.hdr)
		if err != nil {
			return nil, false, false
		}
		pkt = out
	}
	if e.inWindow(now) {
		f.sentWin++
		win = true
	}
	return pkt, win, true
}

func (e *Engine) inWindow(t int64) bool {
	s := e.winStart.Load()
	if s == 0 || t < s {
		return false
	}
	end := e.winEnd.Load()
	return end == 0 || t < end
}

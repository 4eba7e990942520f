package rewrite

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

const (
	pcmuRate   = 8000
	ptime      = 20 * time.Millisecond
	tsPerFrame = 160
	localSSRC  = 0x5eed5eed
	farSSRC    = 0xfa5fa5fa
	inPT       = 8 // PCMA on the far leg...
	outPT      = 0 // ...renumbered, to exercise the PT rewrite
	holdTime   = 15 * time.Minute
)

// harness feeds G.711 packets through an OutStream on a fake clock.
type harness struct {
	t   testing.TB
	s   OutStream
	now int64
	// last accepted output
	lastSeq uint16
	lastTS  uint32
}

func newHarness(t testing.TB, rewriteSSRC bool) *harness {
	return &harness{t: t, s: OutStream{RewriteSSRC: rewriteSSRC, SSRC: localSSRC}, now: int64(time.Hour)}
}

// send builds a packet, runs it through ParseRTP and Rewrite and checks
// that only the header's PT, M, sequence, timestamp and SSRC changed.
func (x *harness) send(seq uint16, ts, ssrc uint32, marker bool) (Header, []byte, error) {
	x.t.Helper()
	b := g711Packet(seq, ts, ssrc)
	b[1] = inPT
	if marker {
		b[1] |= 0x80
	}
	orig := bytes.Clone(b)
	h, err := ParseRTP(b)
	if err != nil {
		x.t.Fatal(err)
	}
	out, err := x.s.Rewrite(b, h, outPT, pcmuRate, x.now)
	if err != nil {
		if !bytes.Equal(b, orig) {
			x.t.Fatalf("Rewrite failed with %v but modified the packet", err)
		}
		return out, b, err
	}
	if !bytes.Equal(b[12:], orig[12:]) || b[0] != orig[0] {
		x.t.Fatalf("Rewrite touched more than the header fields")
	}
	got, err := ParseRTP(b)
	if err != nil {
		x.t.Fatal(err)
	}
	if got != out {
		x.t.Fatalf("returned header %+v, packet says %+v", out, got)
	}
	if got.PayloadType != outPT {
		x.t.Fatalf("PT %d, want %d", got.PayloadType, outPT)
	}
	wantSSRC := ssrc
	if x.s.RewriteSSRC {
		wantSSRC = localSSRC
	}
	if got.SSRC != wantSSRC {
		x.t.Fatalf("SSRC %#x, want %#x", got.SSRC, wantSSRC)
	}
	x.lastSeq, x.lastTS = out.Sequence, out.Timestamp
	return out, b, nil
}

// run sends n consecutive packets 20 ms apart, starting at seq and ts,
// and checks each continues the previous output by +1 and +160.
func (x *harness) run(n int, seq uint16, ts, ssrc uint32) {
	x.t.Helper()
	for i := range n {
		prevSeq, prevTS := x.lastSeq, x.lastTS
		h, _, err := x.send(seq+uint16(i), ts+uint32(i)*tsPerFrame, ssrc, false)
		if err != nil {
			x.t.Fatalf("packet %d: %v", i, err)
		}
		if i > 0 && (h.Sequence != prevSeq+1 || h.Timestamp != prevTS+tsPerFrame || h.Marker) {
			x.t.Fatalf("packet %d: out seq %d ts %d M %v after %d, %d", i, h.Sequence, h.Timestamp, h.Marker, prevSeq, prevTS)
		}
		x.now += int64(ptime)
	}
	x.now -= int64(ptime) // leave now at the last packet's arrival
}

func TestOutStreamPassthrough(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		x := newHarness(t, rewrite)
		// Both counters wrap: 65535 -> 0 and 2^32-1 -> 0 are not jumps.
		const seq0, ts0 = 65000, 0xffff0000
		for i := range 2000 {
			seq, ts := uint16(seq0+i), uint32(ts0+i*tsPerFrame)
			h, _, err := x.send(seq, ts, farSSRC, i == 0 || i == 700)
			if err != nil {
				t.Fatalf("rewrite=%v packet %d: %v", rewrite, i, err)
			}
			if h.Sequence != seq || h.Timestamp != ts || h.Marker != (i == 0 || i == 700) {
				t.Fatalf("rewrite=%v packet %d: got seq %d ts %d M %v, want %d %d", rewrite, i, h.Sequence, h.Timestamp, h.Marker, seq, ts)
			}
			x.now += int64(ptime)
		}
		if n := x.s.Rebases(); n != 0 {
			t.Errorf("rewrite=%v: %d rebases", rewrite, n)
		}
		want := Mapping{Active: true, InSSRC: farSSRC, OutSSRC: farSSRC}
		if rewrite {
			want.OutSSRC = localSSRC
		}
		if m := x.s.Mapping(); m != want {
			t.Errorf("rewrite=%v: Mapping = %+v, want %+v", rewrite, m, want)
		}
	}
}

func TestOutStreamZeroMapping(t *testing.T) {
	var s OutStream
	if m := s.Mapping(); m.Active {
		t.Fatalf("Mapping before first packet = %+v", m)
	}
}

// TestOutStreamRestartAfterHold is the music-on-hold case: the far end goes
// quiet for 15 minutes and comes back with a new sequence base (and, for
// the SSRC case, a new SSRC), and a random timestamp base.
func TestOutStreamRestartAfterHold(t *testing.T) {
	tests := []struct {
		name    string
		jump    uint16 // added to the next input sequence number
		newSSRC uint32
	}{
		{"backward 20000", -20000 & 0xffff, farSSRC},
		{"forward 40000", 40000, farSSRC},
		{"forward 3001", 3001, farSSRC},
		{"backward 10 (restart just below)", -10 & 0xffff, farSSRC},
		{"same numbers again", -100 & 0xffff, farSSRC},
		{"new ssrc", 1, 0x12345678},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			const seq0, ts0 = 30000, 1234567
			x.run(100, seq0, ts0, farSSRC)
			lastSeq, lastTS := x.lastSeq, x.lastTS
			x.now += int64(holdTime)
			seq1 := seq0 + 100 - 1 + tt.jump
			const ts1 = 0x9000_0000
			h, _, err := x.send(seq1, ts1, tt.newSSRC, false)
			if err != nil {
				t.Fatal(err)
			}
			wantTS := lastTS + uint32(holdTime.Seconds())*pcmuRate
			if h.Sequence != lastSeq+1 || h.Timestamp != wantTS || !h.Marker {
				t.Fatalf("after hold: seq %d ts %d M %v, want %d %d true", h.Sequence, h.Timestamp, h.Marker, lastSeq+1, wantTS)
			}
			x.now += int64(ptime)
			x.run(100, seq1+1, ts1+tsPerFrame, tt.newSSRC)
			if n := x.s.Rebases(); n != 1 {
				t.Errorf("%d rebases, want 1", n)
			}
			m := x.s.Mapping()
			if m.InSSRC != tt.newSSRC || m.OutSSRC != localSSRC || seq1+m.SeqOffset != lastSeq+1 || ts1+m.TSOffset != wantTS {
				t.Errorf("Mapping = %+v", m)
			}
		})
	}
}

// TestOutStreamJumpWithoutPause: a restart with no silence before it costs
// one packet (probation), then rebases; the timestamp follows the clock.
// (A rewind of less than MaxMisorder+1 without a pause is indistinguishable
// from reordering; see TestOutStreamSmallRewind.)
func TestOutStreamJumpWithoutPause(t *testing.T) {
	for _, jump := range []uint16{-20000 & 0xffff, 40000, 3001, -65 & 0xffff} {
		x := newHarness(t, true)
		x.run(100, 30000, 5000, farSSRC)
		lastSeq, lastTS := x.lastSeq, x.lastTS
		seq1 := 30099 + jump
		x.now += int64(ptime)
		if _, _, err := x.send(seq1, 777, farSSRC, false); err != ErrJump {
			t.Fatalf("jump %d: first packet err = %v, want ErrJump", int16(jump), err)
		}
		x.now += int64(ptime)
		h, _, err := x.send(seq1+1, 777+tsPerFrame, farSSRC, false)
		if err != nil {
			t.Fatal(err)
		}
		if h.Sequence != lastSeq+1 || h.Timestamp != lastTS+2*tsPerFrame || !h.Marker {
			t.Fatalf("jump %d: seq %d ts %d M %v, want %d %d true", int16(jump), h.Sequence, h.Timestamp, h.Marker, lastSeq+1, lastTS+2*tsPerFrame)
		}
		x.now += int64(ptime)
		x.run(50, seq1+2, 777+2*tsPerFrame, farSSRC)
	}
}

// TestOutStreamVeryLatePacket: one packet far too late to be of use must
// not rebase the stream.
func TestOutStreamVeryLatePacket(t *testing.T) {
	x := newHarness(t, true)
	x.run(200, 1000, 0, farSSRC)
	x.now += int64(ptime)
	if _, _, err := x.send(1000+199-100, 99*tsPerFrame, farSSRC, false); err != ErrJump {
		t.Fatalf("very late packet: err = %v, want ErrJump", err)
	}
	h, _, err := x.send(1200, 200*tsPerFrame, farSSRC, false)
	if err != nil || h.Sequence != 1200 || h.Timestamp != 200*tsPerFrame || h.Marker {
		t.Fatalf("next packet: %+v, %v", h, err)
	}
	if x.s.Rebases() != 0 {
		t.Fatalf("rebased")
	}
}

// TestOutStreamReorder: packets delayed by up to MaxMisorder-1 positions map
// through the same offsets as their neighbours, including after a rebase;
// duplicates are refused.
func TestOutStreamReorder(t *testing.T) {
	x := newHarness(t, true)
	x.run(50, 100, 0, farSSRC)
	x.now += int64(holdTime)
	const seq1, ts1 = 40000, 3_000_000
	if _, _, err := x.send(seq1, ts1, farSSRC, false); err != nil {
		t.Fatal(err)
	}
	m := x.s.Mapping()
	if m.SeqOffset == 0 || m.TSOffset == 0 {
		t.Fatalf("expected a rebase, Mapping = %+v", m)
	}
	// Input 1..999 after seq1, in an order where each packet is at most
	// MaxMisorder-1 behind the highest sent so far.
	r := rand.New(rand.NewPCG(1, 2))
	order := make([]int, 0, 999)
	pending := []int{}
	next := 1
	for next < 1000 || len(pending) > 0 {
		if next < 1000 && (len(pending) == 0 || r.IntN(3) > 0) {
			pending = append(pending, next)
			next++
		}
		// Release a random pending packet, or the oldest one if it is
		// about to fall out of the tolerance.
		i := r.IntN(len(pending))
		if next-1-pending[0] >= MaxMisorder-1 {
			i = 0
		}
		if r.IntN(2) == 0 || next == 1000 {
			order = append(order, pending[i])
			pending = append(pending[:i], pending[i+1:]...)
		}
	}
	for _, k := range order {
		x.now += int64(ptime) / 2
		seq, ts := uint16(seq1+k), uint32(ts1+k*tsPerFrame)
		h, _, err := x.send(seq, ts, farSSRC, false)
		if err != nil {
			t.Fatalf("seq1+%d: %v", k, err)
		}
		if h.Sequence != seq+m.SeqOffset || h.Timestamp != ts+m.TSOffset || h.Marker {
			t.Fatalf("seq1+%d: out %d/%d M %v, want %d/%d", k, h.Sequence, h.Timestamp, h.Marker, seq+m.SeqOffset, ts+m.TSOffset)
		}
		// A duplicate of anything within the window is refused.
		if r.IntN(10) == 0 {
			if _, _, err := x.send(seq, ts, farSSRC, false); err != ErrDuplicate {
				t.Fatalf("duplicate of seq1+%d: err = %v", k, err)
			}
		}
	}
	if x.s.Rebases() != 1 {
		t.Fatalf("%d rebases, want 1", x.s.Rebases())
	}
}

// TestOutStreamTimestampJump: the sequence number continues but the
// timestamp does not (a PBX resetting its clock after music on hold).
func TestOutStreamTimestampJump(t *testing.T) {
	tests := []struct {
		name   string
		dts    uint32 // timestamp step for the packet after 20 ms
		rebase bool
	}{
		{"normal", tsPerFrame, false},
		{"5 s ahead", 5 * pcmuRate, false},
		{"11 s ahead", 11 * pcmuRate, true},
		{"random reset", 0x7654_3210, true},
		{"0.5 s back", -pcmuRate / 2 & 0xffffffff, false},
		{"2 s back", -2 * pcmuRate & 0xffffffff, true},
		{"same timestamp", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newHarness(t, true)
			x.run(100, 500, 80000, farSSRC)
			lastSeq, lastTS := x.lastSeq, x.lastTS
			x.now += int64(ptime)
			ts := 80000 + 99*tsPerFrame + tt.dts
			h, _, err := x.send(500+100, ts, farSSRC, false)
			if err != nil {
				t.Fatal(err)
			}
			if h.Sequence != lastSeq+1 {
				t.Fatalf("seq %d, want %d: a timestamp rebase keeps the sequence", h.Sequence, lastSeq+1)
			}
			wantTS := lastTS + tt.dts
			if tt.rebase {
				wantTS = lastTS + tsPerFrame // 20 ms of wall clock
			}
			if h.Timestamp != wantTS || h.Marker != tt.rebase || x.s.Rebases() != map[bool]uint64{false: 0, true: 1}[tt.rebase] {
				t.Fatalf("ts %d M %v rebases %d, want ts %d M %v", h.Timestamp, h.Marker, x.s.Rebases(), wantTS, tt.rebase)
			}
			x.now += int64(ptime)
			x.run(10, 601, ts+tsPerFrame, farSSRC)
		})
	}
}

// TestOutStreamSilenceSuppression: a sender that stops sending during
// silence (VAD, DTX) and resumes with the sequence number +1 and the
// timestamp advanced by the silence is not rebased, however long it was.
func TestOutStreamSilenceSuppression(t *testing.T) {
	x := newHarness(t, true)
	x.run(50, 7, 0, farSSRC)
	for _, silence := range []time.Duration{time.Second, time.Minute, holdTime} {
		seq, ts := x.lastSeq+1, x.lastTS+uint32(silence.Seconds()*pcmuRate)
		x.now += int64(silence)
		h, _, err := x.send(seq, ts, farSSRC, true)
		if err != nil || h.Sequence != seq || h.Timestamp != ts {
			t.Fatalf("after %v: %+v, %v", silence, h, err)
		}
		x.now += int64(ptime)
		x.run(10, seq+1, ts+tsPerFrame, farSSRC)
	}
	if x.s.Rebases() != 0 {
		t.Fatalf("%d rebases", x.s.Rebases())
	}
}

// TestOutStreamSSRCSwitch: the far end switches SSRC with no pause (a PBX
// bridging in another source). The switch rebases; reordered stragglers of
// the old SSRC keep their old mapping and never reuse a number.
func TestOutStreamSSRCSwitch(t *testing.T) {
	for _, rewrite := range []bool{true, false} {
		x := newHarness(t, rewrite)
		const oldSSRC, newSSRC = 0xaaaa, 0xbbbb
		x.run(100, 100, 1000, oldSSRC) // 100..199
		lastSeq := x.lastSeq
		x.now += int64(ptime)
		h, _, err := x.send(5000, 90000, newSSRC, false)
		if err != nil || h.Sequence != lastSeq+1 || !h.Marker {
			t.Fatalf("rewrite=%v switch: %+v, %v", rewrite, h, err)
		}
		// A late copy of an old-SSRC packet that was already sent is
		// mapped through the old offsets, and refused as a duplicate.
		if _, _, err := x.send(197, 1000+97*tsPerFrame, oldSSRC, false); err != ErrDuplicate {
			t.Fatalf("rewrite=%v: old straggler err = %v, want ErrDuplicate", rewrite, err)
		}
		x.now += int64(ptime)
		x.run(20, 5001, 90000+tsPerFrame, newSSRC)
		if x.s.Rebases() != 1 {
			t.Fatalf("rewrite=%v: %d rebases", rewrite, x.s.Rebases())
		}
		// The old SSRC coming back continues the same output series.
		x.now += int64(ptime)
		last := x.lastSeq
		h, _, err = x.send(200, 1000+100*tsPerFrame, oldSSRC, false)
		if err != nil || h.Sequence != last+1 || !h.Marker {
			t.Fatalf("rewrite=%v: old SSRC back: %+v, %v", rewrite, h, err)
		}
	}
}

// TestOutStreamStraggler: a packet of the stream before a rebase that was
// not yet sent keeps its old mapping, which no packet of the new epoch can
// have used.
func TestOutStreamStraggler(t *testing.T) {
	x := newHarness(t, true)
	// 100..199 except 195, which is held back.
	for i := range 100 {
		if i != 95 {
			if _, _, err := x.send(uint16(100+i), uint32(i*tsPerFrame), farSSRC, false); err != nil {
				t.Fatal(err)
			}
		}
		x.now += int64(ptime)
	}
	// A restart with a new SSRC (rebases at once) ...
	if _, _, err := x.send(9000, 12345, 0xbbbb, false); err != nil {
		t.Fatal(err)
	}
	x.now += int64(ptime)
	// ... then 195 of the old SSRC arrives.
	h, _, err := x.send(195, 95*tsPerFrame, farSSRC, false)
	if err != nil || h.Sequence != 195 || h.Timestamp != 95*tsPerFrame {
		t.Fatalf("straggler: %+v, %v; want its own numbers", h, err)
	}
	if x.s.Rebases() != 1 {
		t.Fatalf("%d rebases", x.s.Rebases())
	}
	// After MaxReorderDelay the old epoch is forgotten and the old SSRC is
	// a new stream.
	x.now += int64(MaxReorderDelay) + 1
	h, _, err = x.send(194, 94*tsPerFrame, farSSRC, false)
	if err != nil || !h.Marker || x.s.Rebases() != 2 {
		t.Fatalf("after delay: %+v, %v, %d rebases", h, err, x.s.Rebases())
	}
}

func TestOutStreamErrors(t *testing.T) {
	var s OutStream
	b := g711Packet(1, 1, 1)
	h, _ := ParseRTP(b)
	if _, err := s.Rewrite(b[:11], h, 0, pcmuRate, 0); err != ErrTooShort {
		t.Errorf("short: %v", err)
	}
	if _, err := s.Rewrite(b, h, 128, pcmuRate, 0); err != ErrPayloadType {
		t.Errorf("pt 128: %v", err)
	}
	if s.Mapping().Active {
		t.Errorf("failed calls started the stream")
	}
}

// TestOutStreamClockRateZero: an unknown clock rate disables the timestamp
// check and a rebase advances the timestamp by one tick.
func TestOutStreamClockRateZero(t *testing.T) {
	var s OutStream
	var now int64
	send := func(seq uint16, ts uint32) Header {
		b := g711Packet(seq, ts, 9)
		h, _ := ParseRTP(b)
		out, err := s.Rewrite(b, h, 0, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		now += int64(ptime)
		return out
	}
	send(1, 100)
	if h := send(2, 0x8000_0000); h.Timestamp != 0x8000_0000 || h.Marker {
		t.Fatalf("timestamp judged without a clock rate: %+v", h)
	}
	now += int64(time.Hour)
	if h := send(20000, 5); h.Sequence != 3 || h.Timestamp != 0x8000_0001 || !h.Marker {
		t.Fatalf("rebase: %+v", h)
	}
}

func TestTicks(t *testing.T) {
	tests := []struct {
		d    time.Duration
		rate uint32
		want uint64
	}{
		{0, 8000, 0},
		{-time.Second, 8000, 0},
		{ptime, 8000, 160},
		{ptime, 48000, 960},
		{holdTime, 90000, 81_000_000},
		{time.Duration(1<<63 - 1), 1 << 31, 1<<62 + 854775807*(1<<31)/1_000_000_000}, // saturates at 2^31 s
		{1, 999_999_999, 0},
	}
	for _, tt := range tests {
		if got := ticks(int64(tt.d), tt.rate); got != tt.want {
			t.Errorf("ticks(%v, %d) = %d, want %d", tt.d, tt.rate, got, tt.want)
		}
	}
}

// outTracker unwraps output sequence numbers and remembers every one sent.
type outTracker struct {
	started bool
	max     int64
	seen    map[int64]bool
}

func (o *outTracker) add(t testing.TB, seq uint16) {
	t.Helper()
	if !o.started {
		o.started, o.max, o.seen = true, int64(seq), map[int64]bool{int64(seq): true}
		return
	}
	d := int64(int16(seq - uint16(o.max)))
	if d > MaxDropout || d <= -DuplicateWindow {
		t.Fatalf("output seq %d is %d from the highest %d", seq, d, uint16(o.max))
	}
	ext := o.max + d
	if o.seen[ext] {
		t.Fatalf("output seq %d (extended %d) sent twice", seq, ext)
	}
	o.seen[ext] = true
	o.max = max(o.max, ext)
}

// TestOutStreamNeverRepeats drives streams with loss, reordering,
// duplication, restarts, SSRC switches and pauses from seeded random
// sources and checks that no output sequence number is ever sent twice and
// that the output only moves forward by plausible steps.
func TestOutStreamNeverRepeats(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 99))
		var s OutStream
		s.RewriteSSRC = seed%2 == 0
		var o outTracker
		now := int64(0)
		ssrc := uint32(1)
		seq := uint16(r.Uint32())
		ts := r.Uint32()
		b := make([]byte, 172)
		var recent []uint16
		for range 5000 {
			switch p := r.IntN(1000); {
			case p < 5: // restart: new base
				seq, ts = uint16(r.Uint32()), r.Uint32()
			case p < 8: // new SSRC
				ssrc = r.Uint32N(4)
			case p < 12: // pause
				now += int64(r.IntN(int(5 * time.Second)))
			}
			in := seq
			switch p := r.IntN(100); {
			case p < 5 && len(recent) > 0: // reordered or duplicated
				in = recent[r.IntN(len(recent))]
			case p < 10: // lost
				seq++
				in = seq
			}
			copy(b, g711Packet(in, ts, ssrc))
			h, err := ParseRTP(b)
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.Rewrite(b, h, 0, pcmuRate, now)
			switch {
			case err == nil:
				o.add(t, out.Sequence)
			case errors.Is(err, ErrDuplicate), errors.Is(err, ErrStale), errors.Is(err, ErrJump):
			default:
				t.Fatal(err)
			}
			recent = append(recent, in)
			if len(recent) > 80 {
				recent = recent[1:]
			}
			seq++
			ts += tsPerFrame
			now += int64(ptime)
		}
	}
}

func TestOutStreamAllocs(t *testing.T) {
	x := newHarness(t, true)
	b := g711Packet(0, 0, farSSRC)
	var seq uint16
	n := testing.AllocsPerRun(1000, func() {
		seq++
		b[2], b[3] = byte(seq>>8), byte(seq)
		h, _ := ParseRTP(b)
		_, _ = x.s.Rewrite(b, h, 0, pcmuRate, x.now)
		x.now += int64(ptime)
	})
	if n != 0 {
		t.Fatalf("ParseRTP+Rewrite allocate %v times per packet", n)
	}
}

// FuzzOutStream feeds random sequences of (sequence step, timestamp step,
// SSRC, time gap) and checks that Rewrite never panics and never sends an
// output sequence number twice. Coverage grows steadily here, and by default
// the fuzzer spends up to a minute minimising each new input, so short runs
// want -fuzzminimizetime=200x to spend their time fuzzing.
func FuzzOutStream(f *testing.F) {
	f.Add([]byte{0, 1, 0, 160, 0, 20, 0, 1, 0, 160, 0, 20, 0xb1, 0xe0, 0, 160, 0, 255, 0, 1, 0, 160, 0, 20})
	f.Add([]byte{0, 1, 0, 160, 0, 20, 0x9c, 0x40, 0, 160, 0, 20, 0, 1, 0, 160, 0, 20, 0xff, 0xc0, 0, 160, 1, 20})
	f.Add([]byte{0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 2, 0, 0xff, 0xff, 0, 0, 1, 0})
	f.Fuzz(runOutStreamOps)
}

// runOutStreamOps interprets ops as 6-byte steps: sequence number step
// (2 bytes), timestamp step in 8-tick units (2 bytes, signed), SSRC and
// flags (clock rate unknown, clock steps back), and a time gap.
func runOutStreamOps(t *testing.T, ops []byte) {
	var s OutStream
	s.RewriteSSRC = len(ops)%2 == 0
	s.SSRC = 42
	var o outTracker
	var seq uint16
	var ts uint32
	var now int64
	b := make([]byte, 20)
	for ; len(ops) >= 6; ops = ops[6:] {
		seq += uint16(ops[0])<<8 | uint16(ops[1])
		ts += uint32(int32(int16(uint16(ops[2])<<8|uint16(ops[3])))) * 8
		ssrc := uint32(ops[4] & 3)
		clock := uint32(pcmuRate)
		if ops[4]&4 != 0 {
			clock = 0
		}
		if g := ops[5]; g < 200 {
			now += int64(g) * int64(time.Millisecond)
		} else {
			now += int64(g-200) * int64(10*time.Second)
		}
		if ops[4]&8 != 0 {
			now -= int64(time.Second) // a clock that steps back must not break anything
		}
		copy(b, g711Packet(seq, ts, ssrc)[:20])
		h, err := ParseRTP(b)
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Rewrite(b, h, ops[5]&0x7f, clock, now)
		switch err {
		case nil:
			o.add(t, out.Sequence)
		case ErrDuplicate, ErrStale, ErrJump:
		default:
			t.Fatal(err)
		}
	}
}

func BenchmarkOutStream(b *testing.B) {
	var pt PTMap
	if err := pt.Set(inPT, outPT); err != nil {
		b.Fatal(err)
	}
	s := OutStream{RewriteSSRC: true, SSRC: localSSRC}
	pkt := g711Packet(0, 0, farSSRC)
	var seq uint16
	var ts uint32
	now := int64(time.Hour)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		// What the packet worker does per packet: the far end's header
		// is restored (a new packet), parsed, mapped and rewritten.
		seq++
		ts += tsPerFrame
		pkt[1] = inPT
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		pkt[4], pkt[5], pkt[6], pkt[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		pkt[8], pkt[9], pkt[10], pkt[11] = 0xfa, 0x5f, 0xa5, 0xfa
		h, err := ParseRTP(pkt)
		if err != nil {
			b.Fatal(err)
		}
		out, ok := pt.Lookup(h.PayloadType)
		if !ok {
			b.Fatal("unmapped")
		}
		if _, err := s.Rewrite(pkt, h, out, pcmuRate, now); err != nil {
			b.Fatal(err)
		}
		now += int64(ptime)
	}
}

// TestOutStreamSmallRewind: a far end that restarts a few numbers back with
// no pause looks exactly like reordering. Its packets that reuse numbers
// already sent are refused as duplicates until it passes the old highest;
// nothing is sent twice and the stream is not rebased.
func TestOutStreamSmallRewind(t *testing.T) {
	x := newHarness(t, true)
	x.run(100, 1000, 0, farSSRC) // 1000..1099
	var dups int
	for i := range 40 {
		x.now += int64(ptime)
		h, _, err := x.send(uint16(1080+i), uint32(100+i)*tsPerFrame, farSSRC, false)
		switch {
		case err == ErrDuplicate:
			dups++
		case err != nil:
			t.Fatal(err)
		case h.Sequence != uint16(1080+i):
			t.Fatalf("seq %d mapped to %d", 1080+i, h.Sequence)
		}
	}
	if dups != 20 || x.s.Rebases() != 0 {
		t.Fatalf("%d duplicates, %d rebases; want 20, 0", dups, x.s.Rebases())
	}
}

// TestOutStreamResume: a stream saved, then resumed by a new OutStream (a
// restart of the process), continues through the same offsets when the far
// end went on sending (its numbers are ahead), with no marker; a new SSRC
// after the resume rebases above the saved ceiling; the ceiling moves only
// every ResumeStep packets.
func TestOutStreamResume(t *testing.T) {
	x := newHarness(t, true)
	const ssrc = 0xaaaa
	x.run(100, 100, 1000, ssrc)
	x.now += int64(ptime)
	x.send(5000, 90000, 0xbbbb, false) // a rebase: offsets are not zero now
	x.now += int64(ptime)
	x.run(10, 5001, 90000+tsPerFrame, 0xbbbb)
	r, ok := x.s.Save()
	if !ok || r.InSSRC != 0xbbbb || r.SeqOffset == 0 {
		t.Fatalf("saved %+v %v, want the rebased mapping", r, ok)
	}
	if int16(r.OutCeiling-x.lastSeq) <= 0 || r.OutCeiling%ResumeStep != 0 {
		t.Fatalf("ceiling %d not above the last sent %d on a step", r.OutCeiling, x.lastSeq)
	}
	if r2, _ := x.s.Save(); r2 != r {
		t.Fatalf("a second save differs: %+v %+v", r2, r)
	}
	lastSeq, lastTS := x.lastSeq, x.lastTS

	// The restart: 30 packets went by meanwhile. The far end's numbers,
	// through the saved offsets, fall below the ceiling (numbers that may
	// have been sent after the record was written): the stream carries on
	// at the ceiling, its timestamps through the saved offset (RFC 3711
	// section 9.2: no SRTP index twice).
	y := newHarness(t, true)
	y.now = x.now + int64(time.Second)
	y.s.Resume(r, y.now)
	if r3, _ := y.s.Save(); r3 != r {
		t.Fatalf("a resumed stream saves %+v before any packet, want %+v", r3, r)
	}
	h, _, err := y.send(5011+30, 90000+(11+30)*tsPerFrame, 0xbbbb, false)
	if err != nil || h.Sequence != r.OutCeiling || h.Timestamp != lastTS+31*tsPerFrame || h.Marker {
		t.Fatalf("resumed: %+v %v, want seq %d (the ceiling) ts %d without marker", h, err, r.OutCeiling, lastTS+31*tsPerFrame)
	}
	y.now += int64(ptime)
	y.run(5, 5042, 90000+42*tsPerFrame, 0xbbbb)

	// With the ceiling just above the last sent (an exact record), the far
	// end's numbers are ahead of it and continue through the offsets.
	exact := r
	exact.OutCeiling = lastSeq + 1
	e := newHarness(t, true)
	e.s.Resume(exact, e.now)
	h, _, err = e.send(5011+30, 90000+(11+30)*tsPerFrame, 0xbbbb, false)
	if err != nil || h.Sequence != lastSeq+31 || h.Timestamp != lastTS+31*tsPerFrame || h.Marker {
		t.Fatalf("resumed ahead of the ceiling: %+v %v, want seq %d ts %d without marker", h, err, lastSeq+31, lastTS+31*tsPerFrame)
	}

	// A far end whose numbers went back (or a straggler, or a forged plain
	// packet, first) never takes the stream below the ceiling.
	for _, back := range []uint16{1, 100, 30000, 40000} {
		b := newHarness(t, true)
		b.s.Resume(exact, b.now)
		h, _, err = b.send(5010-back, 90000+tsPerFrame, 0xbbbb, false)
		if err != nil || int16(h.Sequence-exact.OutCeiling) < 0 {
			t.Fatalf("far end %d back: %+v %v, want seq at or above %d", back, h, err, exact.OutCeiling)
		}
	}

	// Another SSRC after a resume starts above the ceiling.
	z := newHarness(t, true)
	z.s.Resume(r, z.now)
	h, _, err = z.send(7, 700, 0xcccc, false)
	if err != nil || h.Sequence != r.OutCeiling || !h.Marker {
		t.Fatalf("new SSRC after resume: %+v %v, want seq %d with marker", h, err, r.OutCeiling)
	}
	if _, ok := (&OutStream{}).Save(); ok {
		t.Fatal("a stream that sent nothing has something to save")
	}
}

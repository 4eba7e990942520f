package batchconn

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strait-sbc/strait/internal/racecheck"
)

func skipUnderRace(t *testing.T) {
	t.Helper()
	if racecheck.Enabled {
		t.Skip("allocation counts are pinned without -race (the detector allocates)")
	}
}

func listen(t testing.TB, addr string) *Socket {
	t.Helper()
	s, err := Listen(netip.MustParseAddrPort(addr), Options{RecvBuffer: 1 << 20, TOS: 0xb8})
	if err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
			t.Skipf("%s not available here: %v", addr, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recvAll reads until n datagrams arrived or a deadline passed.
func recvAll(t *testing.T, b *Batch, fd, n int) []Message {
	t.Helper()
	var got []Message
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		k, err := b.Recv(fd)
		if errors.Is(err, unix.EAGAIN) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < k; i++ {
			m := b.Msgs[i]
			var data []byte
			if m.N >= 0 {
				data = bytes.Clone(m.Buf[:m.N])
			}
			got = append(got, Message{Buf: data, N: m.N, Addr: m.Addr, Drops: m.Drops})
		}
	}
	if len(got) != n {
		t.Fatalf("received %d datagrams, want %d", len(got), n)
	}
	return got
}

func TestSendRecvRoundTrip(t *testing.T) {
	for _, local := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(local, func(t *testing.T) {
			a, b1, b2 := listen(t, local), listen(t, local), listen(t, local)
			s := NewSender[int](16)
			// Interleave two destinations sockets' worth of datagrams from a:
			// Flush must send each socket's share in order.
			for i := 0; i < 6; i++ {
				dst := b1.Local
				if i%2 == 1 {
					dst = b2.Local
				}
				if !s.Add(a.FD, a.V6, []byte{byte(i), 1, 2, 3}, dst, i) {
					t.Fatal("Add refused below capacity")
				}
			}
			var drops []int
			if n := s.Flush(func(tag int, err error) { drops = append(drops, tag) }); n != 6 {
				t.Fatalf("Flush sent %d, want 6 (drops %v)", n, drops)
			}
			if s.Len() != 0 {
				t.Fatalf("queue not emptied: %d", s.Len())
			}
			batch := NewBatch(8, 2048, 64)
			for _, c := range []struct {
				sock *Socket
				want []byte
			}{{b1, []byte{0, 2, 4}}, {b2, []byte{1, 3, 5}}} {
				got := recvAll(t, batch, c.sock.FD, 3)
				for i, m := range got {
					if m.Buf[0] != c.want[i] || m.N != 4 {
						t.Errorf("datagram %d: % x, want first byte %d", i, m.Buf, c.want[i])
					}
					if m.Addr != a.Local {
						t.Errorf("source %v, want %v", m.Addr, a.Local)
					}
				}
			}
		})
	}
}

func TestListenOptions(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		s, err := Listen(netip.MustParseAddrPort(addr), Options{ReusePort: true, RecvBuffer: 1 << 20, TOS: 0xb8, CountDrops: true})
		if err != nil {
			t.Skipf("%s: %v", addr, err)
		}
		level, name := unix.IPPROTO_IP, unix.IP_TOS
		if s.V6 {
			level, name = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
		}
		for _, o := range []struct {
			what        string
			level, name int
			want        int
		}{
			{"DSCP EF", level, name, 0xb8},
			{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
			{"SO_RXQ_OVFL", unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1},
		} {
			if got, err := unix.GetsockoptInt(s.FD, o.level, o.name); err != nil || got != o.want {
				t.Errorf("%s %s = %d, %v; want %d", addr, o.what, got, err, o.want)
			}
		}
		// The kernel caps the request at net.core.rmem_max and doubles it.
		want := 1 << 20
		if b, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
			if max, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && max < want {
				want = max
			}
		}
		if got, _ := unix.GetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_RCVBUF); got < want {
			t.Errorf("%s SO_RCVBUF = %d, want at least %d", addr, got, want)
		}
		// A second socket on the same port is another worker's share.
		s2, err := Listen(s.Local, Options{ReusePort: true})
		if err != nil {
			t.Errorf("%s: second SO_REUSEPORT socket on %v: %v", addr, s.Local, err)
		} else {
			s2.Close()
		}
		s.Close()
	}
}

func TestRecvLeavesTailroom(t *testing.T) {
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	big := make([]byte, 100)
	if err := a.SendTo(big, b.Local); err != nil {
		t.Fatal(err)
	}
	batch := NewBatch(1, 64, 16) // 48 bytes offered to the kernel
	got := recvAll(t, batch, b.FD, 1)
	if got[0].N != -1 {
		t.Fatalf("oversized datagram: N = %d, want -1 (truncated)", got[0].N)
	}
	if cap(batch.Msgs[0].Buf) != 64 {
		t.Fatalf("buffer capacity %d, want 64", cap(batch.Msgs[0].Buf))
	}
}

func TestRecvAtFillsFromSeveralSockets(t *testing.T) {
	a, b, c := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	a.SendTo([]byte("to-b"), b.Local)
	a.SendTo([]byte("to-c"), c.Local)
	batch := NewBatch(4, 256, 0)
	deadline := time.Now().Add(2 * time.Second)
	off := 0
	for _, s := range []*Socket{b, c} {
		for {
			n, err := batch.RecvAt(s.FD, off)
			if err == nil {
				off += n
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if off != 2 || string(batch.Msgs[0].Buf[:batch.Msgs[0].N]) != "to-b" || string(batch.Msgs[1].Buf[:batch.Msgs[1].N]) != "to-c" {
		t.Fatalf("off %d, msgs %q %q", off, batch.Msgs[0].Buf[:4], batch.Msgs[1].Buf[:4])
	}
	if _, err := batch.RecvAt(b.FD, 4); err == nil {
		t.Fatal("RecvAt past the end succeeded")
	}
}

func TestRecvReportsKernelDrops(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	b, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), Options{RecvBuffer: 4096, CountDrops: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pkt := make([]byte, 1000)
	for i := 0; i < 200; i++ { // far more than 4 KiB (doubled by the kernel) holds
		a.SendTo(pkt, b.Local)
	}
	batch := NewBatch(64, 2048, 0)
	for { // drain what fitted: those were queued before any drop
		if _, err := batch.Recv(b.FD); err != nil {
			break
		}
	}
	// The next datagram carries the socket's running drop count.
	a.SendTo(pkt, b.Local)
	got := recvAll(t, batch, b.FD, 1)
	if got[0].Drops == 0 || got[0].Drops >= 200 {
		t.Fatalf("Drops = %d after overflowing a 4 KiB buffer with 200 datagrams", got[0].Drops)
	}
	t.Logf("kernel dropped %d of 200", got[0].Drops)
}

func TestSenderDropsUnreachableFamily(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	s := NewSender[string](4)
	s.Add(a.FD, a.V6, []byte("x"), netip.MustParseAddrPort("[2001:db8::1]:5000"), "v6-from-v4")
	var dropped []string
	if n := s.Flush(func(tag string, err error) { dropped = append(dropped, tag) }); n != 0 {
		t.Fatalf("sent %d", n)
	}
	if len(dropped) != 1 || dropped[0] != "v6-from-v4" {
		t.Fatalf("dropped = %v", dropped)
	}
}

func TestSenderFull(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	s := NewSender[int](2)
	for i := 0; i < 2; i++ {
		if !s.Add(a.FD, false, []byte("x"), a.Local, i) {
			t.Fatal("refused")
		}
	}
	if s.Add(a.FD, false, []byte("x"), a.Local, 3) {
		t.Fatal("Add accepted beyond capacity")
	}
}

func TestPollerWakesOnDatagramAndWaker(t *testing.T) {
	p, err := NewPoller(8)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	if err := p.Add(b.FD, 0x1_0000_0007); err != nil {
		t.Fatal(err)
	}
	w, err := NewWaker(p, 99)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	got := make(chan []Token, 4)
	go func() {
		toks := make([]Token, 0, 8)
		for {
			var err error
			toks, err = p.Wait(toks)
			if err != nil {
				close(got)
				return
			}
			got <- append([]Token(nil), toks...)
			for _, tok := range toks {
				switch tok {
				case 99:
					w.Drain()
				default:
					batch := NewBatch(4, 256, 0)
					for {
						if _, err := batch.Recv(b.FD); err != nil {
							break
						}
					}
				}
			}
		}
	}()
	expect := func(want Token) {
		t.Helper()
		select {
		case toks := <-got:
			if len(toks) != 1 || toks[0] != want {
				t.Fatalf("Wait returned %v, want [%v]", toks, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("Wait did not return %v", want)
		}
	}
	a.SendTo([]byte("hello"), b.Local)
	expect(0x1_0000_0007)
	w.Wake()
	expect(99)
	p.Close()
	select {
	case _, ok := <-got:
		if ok {
			t.Fatal("unexpected events after Close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
	if _, err := p.Wait(nil); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Wait after Close: %v, want os.ErrClosed", err)
	}
}

func TestRecvSendAllocs(t *testing.T) {
	skipUnderRace(t)
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	s := NewSender[int](16)
	batch := NewBatch(16, 2048, 64)
	pkt := make([]byte, 172)
	drop := func(int, error) {}
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 16; i++ {
			s.Add(a.FD, false, pkt, b.Local, i)
		}
		s.Flush(drop)
		for got := 0; got < 16; {
			n, err := batch.Recv(b.FD)
			if err != nil {
				continue
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Fatalf("send+recv of 16 datagrams allocates %v times", allocs)
	}
}

func TestPollerWaitAllocs(t *testing.T) {
	skipUnderRace(t)
	p, err := NewPoller(4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w, err := NewWaker(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	toks := make([]Token, 0, 4)
	allocs := testing.AllocsPerRun(100, func() {
		w.Wake()
		toks, _ = p.Wait(toks)
		w.Drain()
	})
	if allocs != 0 {
		t.Fatalf("Wait allocates %v times", allocs)
	}
}

// BenchmarkLoopback32 sends and receives batches of 32 G.711-sized datagrams
// over loopback: the cost per datagram of the kernel's UDP path when it is
// entered once per batch.
func BenchmarkLoopback32(b *testing.B) {
	a, c := listen(b, "127.0.0.1:0"), listen(b, "127.0.0.1:0")
	s := NewSender[int](32)
	batch := NewBatch(32, 2048, 64)
	pkt := make([]byte, 172)
	b.ReportAllocs()
	b.SetBytes(32 * 172)
	for b.Loop() {
		for i := 0; i < 32; i++ {
			s.Add(a.FD, false, pkt, c.Local, i)
		}
		s.Flush(nil)
		for got := 0; got < 32; {
			n, err := batch.Recv(c.FD)
			if err != nil {
				continue
			}
			got += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/datagram")
}

// BenchmarkLoopback1 is the same with one datagram per system call, the
// baseline batching is measured against.
func BenchmarkLoopback1(b *testing.B) {
	a, c := listen(b, "127.0.0.1:0"), listen(b, "127.0.0.1:0")
	s := NewSender[int](1)
	batch := NewBatch(1, 2048, 64)
	pkt := make([]byte, 172)
	b.ReportAllocs()
	b.SetBytes(172)
	for b.Loop() {
		s.Add(a.FD, false, pkt, c.Local, 0)
		s.Flush(nil)
		for {
			if n, _ := batch.Recv(c.FD); n == 1 {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/datagram")
}

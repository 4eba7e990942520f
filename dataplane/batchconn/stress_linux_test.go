package batchconn

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Sockets come and go while datagrams flow to all of them: every datagram
// returned is the one sent to the socket its token names, intact.
func TestLoopChurnKeepsDatagramsApart(t *testing.T) {
	loopModes(t, func(t *testing.T, mode Mode) {
		l := testLoop(t, LoopConfig[int]{Mode: mode, BatchSize: 16, Buffers: 64})
		src := listen(t, "127.0.0.1:0")
		type reg struct {
			s   *Socket
			tok Token
		}
		var live []reg
		next := Token(1)
		add := func() {
			s, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), Options{RecvBuffer: 1 << 16})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Add(s, next); err != nil {
				t.Fatal(err)
			}
			live = append(live, reg{s, next})
			next++
		}
		for i := 0; i < 40; i++ {
			add()
		}
		sent, got, bad, stray := 0, 0, 0, 0
		deadline := time.Now().Add(3 * time.Second)
		pkt := make([]byte, 200)
		for round := 0; time.Now().Before(deadline) && round < 400; round++ {
			for i, r := range live {
				if (round+i)%3 != 0 {
					continue
				}
				binary.BigEndian.PutUint64(pkt, uint64(r.tok))
				binary.BigEndian.PutUint64(pkt[192:], uint64(r.tok)^0xffff)
				if src.SendTo(pkt, r.s.Local) == nil {
					sent++
				}
			}
			msgs, err := collectSome(l)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.Addr.Port() != src.Local.Port() {
					// Another process's datagram to a port it used before
					// (the machine is shared; ports are reused at once).
					stray++
					continue
				}
				got++
				if m.N != 200 || Token(binary.BigEndian.Uint64(m.Buf)) != m.Token || binary.BigEndian.Uint64(m.Buf[192:]) != uint64(m.Token)^0xffff {
					bad++
				}
			}
			if round%10 == 5 { // churn: remove and close a few, add new ones
				for k := 0; k < 5 && len(live) > 0; k++ {
					r := live[0]
					live = live[1:]
					if err := l.Remove(r.s); err != nil {
						t.Fatal(err)
					}
					r.s.Close()
					add()
				}
			}
		}
		t.Logf("%s: sent %d, got %d, bad %d, %d from elsewhere", mode, sent, got, bad, stray)
		if bad > 0 || got < sent/2 {
			t.Fatalf("sent %d, got %d, %d wrong", sent, got, bad)
		}
	})
}

// collectSome returns what arrives in about 5 ms.
func collectSome(l Loop[int]) ([]Message, error) {
	defer wakeEvery(l, 2*time.Millisecond)()
	var out []Message
	for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
		msgs, err := l.Next()
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			c := m
			c.Buf = append([]byte(nil), m.Buf[:max(m.N, 0)]...)
			out = append(out, c)
		}
	}
	return out, nil
}

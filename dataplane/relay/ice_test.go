package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// checker is a peer's ICE agent: it sends connectivity checks to a leg's
// port with given credentials and reads the answers.
type checker struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func newChecker(tb testing.TB, to netip.AddrPort) *checker {
	c, _ := sink(tb)
	return &checker{conn: c, to: to}
}

// creds are what a check is sent with: "local" is the node's.
type creds struct{ local, remote, pwd string }

func (c *checker) send(cr creds, nominate bool) error {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(cr.local + ":" + cr.remote)}
	if nominate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	setters = append(setters, stun.NewShortTermIntegrity(cr.pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return err
	}
	_, err = c.conn.WriteToUDPAddrPort(m.Raw, c.to)
	return err
}

// answered sends one check and reports whether a success response that
// verifies with pwd came back.
func (c *checker) answered(cr creds) (bool, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(cr.local+":"+cr.remote),
		stun.NewShortTermIntegrity(cr.pwd), stun.Fingerprint)
	if err != nil {
		return false, err
	}
	if _, err := c.conn.WriteToUDPAddrPort(req.Raw, c.to); err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		n, err := c.conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if resp.Decode() != nil || resp.TransactionID != req.TransactionID {
			continue // an answer to an earlier check
		}
		if err := stun.NewShortTermIntegrity(cr.pwd).Check(resp); err != nil {
			return false, fmt.Errorf("answer does not verify with the password: %v", err)
		}
		return resp.Type == stun.BindingSuccess, nil
	}
}

// TestICERestartsUnderSTUNTraffic: several ICE restarts in a row while the
// peer keeps sending checks, run with -race. Workers read a leg's
// credentials without a lock and replace them when the peer moves to the
// new ones; updates replace them too: neither may ever write to a
// published value. After each restart the new credentials are answered,
// and after the next one the credentials of two restarts ago are not:
// the workers' tables hold the current and previous ufrags only.
func TestICERestartsUnderSTUNTraffic(t *testing.T) {
	e := newTestEngine(t, 2)
	spec := func(remote string) []*pb.LegSpec {
		return []*pb.LegSpec{{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: remote}, Streams: []*pb.StreamSpec{pcmuStream(0)}}}
	}
	s, err := e.CreateSession(&pb.CreateSessionRequest{Legs: spec("peer0")})
	if err != nil {
		t.Fatal(err)
	}
	port := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.legs[0].group.port)
	credsOf := func(remote string) creds {
		p := s.Proto().Legs[0]
		return creds{p.LocalUfrag, remote, p.LocalPwd}
	}
	cur := credsOf("peer0")

	// Traffic: two agents keep sending nominated checks with the newest
	// credentials the test published, from two addresses (the path moves
	// between them, as a peer's would after a restart).
	var latest atomic.Pointer[creds] // replaced, never changed in place
	first := cur
	latest.Store(&first)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for a := 0; a < 2; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newChecker(t, port)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := c.send(*latest.Load(), i%2 == 0); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	probe := newChecker(t, port)
	var history []creds
	for r := 1; r <= 4; r++ {
		remote := fmt.Sprintf("peer%d", r)
		if _, err := e.UpdateSession(&pb.UpdateSessionRequest{Id: s.ID, Legs: spec(remote), IceRestart: []bool{true}}); err != nil {
			t.Fatal(err)
		}
		history = append(history, cur)
		cur = credsOf(remote)
		next := cur
		latest.Store(&next)
		if cur.local == history[len(history)-1].local {
			t.Fatalf("restart %d kept ufrag %q", r, cur.local)
		}
		ok, err := probe.answered(cur)
		if err != nil || !ok {
			t.Fatalf("restart %d: a check with the new credentials: answered %v, %v", r, ok, err)
		}
		if r >= 2 {
			old := history[len(history)-2]
			old.remote = remote
			if ok, err := probe.answered(old); err != nil || ok {
				t.Fatalf("restart %d: a check with the credentials of two restarts ago was answered (%v, %v)", r, ok, err)
			}
		}
		s.mu.Lock()
		n := len(s.tables.ufrags)
		s.mu.Unlock()
		if n > 2 {
			t.Fatalf("restart %d: %d ufrags published", r, n)
		}
	}
	close(stop)
	wg.Wait()
	if got := s.legs[0].ctr.stunIn.Load(); got < 4 {
		t.Fatalf("only %d checks answered", got)
	}
	if _, err := e.DeleteSession(s.ID, "test"); err != nil {
		t.Fatal(err)
	}
}

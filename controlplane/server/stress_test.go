package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/siptest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// eventNode is a real node whose event stream the test can add to (a
// media timeout on demand).
type eventNode struct {
	pb.Node
	inject chan *pb.Event
}

func (n *eventNode) WatchEvents(ctx context.Context, session string) (<-chan *pb.Event, error) {
	in, err := n.Node.WatchEvents(ctx, session)
	if err != nil {
		return nil, err
	}
	out := make(chan *pb.Event, 64)
	go func() {
		defer close(out)
		for {
			var ev *pb.Event
			select {
			case e, ok := <-in:
				if !ok {
					return
				}
				ev = e
			case ev = <-n.inject:
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// stressCall is one call of TestCallStress: a caller phone of its own
// (its user names the call in Strait's list) and the callee's dialog.
type stressCall struct {
	i      int
	caller *siptest.Phone
	out    *siptest.Dialog
	in     chan *siptest.Dialog
}

// Many calls at once, each ended another way (BYE from either side or
// both at once, API hang-up while ringing or answered, media timeout
// from the node), with re-INVITEs from both sides and glare, while other
// goroutines read GET /v1/calls, the calls' snapshots and the sessions
// they hold. Run under -race: every call must end with its dialogs,
// session, goroutines and listing gone and one CDR each.
func TestCallStress(t *testing.T) {
	const calls = 48
	n := newBigNode(t, 2*calls+8)
	en := &eventNode{Node: n, inject: make(chan *pb.Event, 16)}
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.CDRFile = t.TempDir() + "/cdr.jsonl"
	// 48 phones and bob all send from 127.0.0.1: one source to the flood
	// bounds, which would rightly drop what 49 real addresses may send.
	cfg.SIPRate, cfg.MaxSIPTransactions = 0, 0
	srv, err := New(Options{Config: cfg, Nodes: []*dpool.Node{{Name: "local", API: en}}, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, srv: srv, node: n, cdr: cfg.CDRFile}

	// Open registration on loopback: bob registers, callers need not.
	bob, err := siptest.NewUDP(srv.SIPAddr(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bob.Close)
	if res, err := bob.Register(ctx(t), "", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("bob REGISTER: %v %v", res, err)
	}
	plain := newPlain(t)
	sdpAt := func(v int, dir string) []byte {
		return siptest.PlainSDP(v, plain.Addr(), plain.RTCPAddr(), dir, false)
	}
	cs := make([]*stressCall, calls)
	byCaller := map[string]*stressCall{}
	for i := range cs {
		p, err := siptest.NewUDP(srv.SIPAddr(), fmt.Sprintf("c%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		cs[i] = &stressCall{i: i, caller: p, in: make(chan *siptest.Dialog, 1)}
		byCaller[fmt.Sprintf("c%02d", i)] = cs[i]
	}
	go func() {
		for d := range bob.Incoming {
			if c := byCaller[d.Invite.From().Address.User]; c != nil {
				c.in <- d
			}
		}
	}()
	base := runtime.NumGoroutine()

	// Readers, all along.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := http.Get("http://" + srv.HTTPAddr() + "/v1/calls")
				if err != nil {
					t.Error(err)
					return
				}
				var list struct{ Calls []b2bua.Info }
				json.NewDecoder(res.Body).Decode(&list)
				res.Body.Close()
				srv.Engine.ActiveSessions()
				for _, in := range list.Calls {
					if c, ok := srv.Engine.Call(in.ID); ok {
						c.Info()
						c.State()
					}
				}
			}
		}()
	}

	// callID waits until Strait lists the call of caller user, answered.
	callID := func(user string) (b2bua.Info, bool) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, in := range srv.Engine.Calls() {
				if in.Caller == user && in.State == "answered" {
					return in, true
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		return b2bua.Info{}, false
	}

	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			user := fmt.Sprintf("c%02d", c.i)
			out, err := c.caller.Invite(cctx, "bob", sdpAt(1, "sendrecv"))
			if err != nil {
				t.Errorf("%s: INVITE: %v", user, err)
				return
			}
			c.out = out
			var in *siptest.Dialog
			select {
			case in = <-c.in:
			case <-cctx.Done():
				t.Errorf("%s: bob never got the call", user)
				return
			}
			if c.i%8 == 7 {
				// Hung up through the API while bob rings: bob gets CANCEL,
				// the caller 487.
				in.Ring()
				var id string
				for id == "" && cctx.Err() == nil {
					for _, in := range srv.Engine.Calls() {
						if in.Caller == user {
							id = in.ID
						}
					}
				}
				go srv.Engine.Hangup(id)
				if res, _ := out.WaitAnswer(cctx, ""); res == nil || res.StatusCode != 487 {
					t.Errorf("%s: hung up while ringing, the caller got %v", user, res)
				}
				select {
				case <-in.Cancelled():
				case <-time.After(15 * time.Second):
					t.Errorf("%s: bob's call was not cancelled", user)
				}
				return
			}
			go in.Answer(sdpAt(1, "sendrecv"))
			if res, err := out.WaitAnswer(cctx, ""); err != nil || res.StatusCode != 200 {
				t.Errorf("%s: answer: %v %v", user, res, err)
				return
			}
			out.Ack(cctx)
			info, ok := callID(user)
			if !ok {
				t.Errorf("%s: not listed as answered", user)
				return
			}
			switch c.i % 8 {
			case 0:
				out.Hangup(cctx)
			case 1:
				in.Hangup(cctx)
			case 2:
				srv.Engine.Hangup(info.ID)
			case 3:
				if res, err := out.Reinvite(cctx, sdpAt(2, "sendonly")); err != nil || res.StatusCode != 200 {
					t.Errorf("%s: hold: %v %v", user, res, err)
				}
				in.Hangup(cctx)
			case 4:
				go in.Reinvite(cctx, sdpAt(2, "sendrecv"))
				en.inject <- &pb.Event{Type: pb.EventType_EVENT_TYPE_MEDIA_TIMEOUT, SessionId: info.Session,
					Labels: map[string]string{dpool.LabelCall: info.ID}}
			case 5:
				var both sync.WaitGroup
				both.Add(2)
				go func() { defer both.Done(); out.Hangup(cctx) }()
				go func() { defer both.Done(); in.Hangup(cctx) }()
				both.Wait()
			case 6:
				// Glare: both sides re-offer at once; at most one wins.
				var both sync.WaitGroup
				both.Add(2)
				codes := make([]int, 2)
				go func() {
					defer both.Done()
					if res, err := out.Reinvite(cctx, sdpAt(3, "sendrecv")); err == nil {
						codes[0] = res.StatusCode
					}
				}()
				go func() {
					defer both.Done()
					if res, err := in.Reinvite(cctx, sdpAt(3, "sendrecv")); err == nil {
						codes[1] = res.StatusCode
					}
				}()
				both.Wait()
				if codes[0] == 200 && codes[1] == 200 {
					t.Logf("%s: both re-offers passed (they did not overlap)", user)
				}
				srv.Engine.Hangup(info.ID)
			}
			for _, d := range []*siptest.Dialog{out, in} {
				if err := d.WaitEnded(30 * time.Second); err != nil {
					t.Errorf("%s (case %d): %v", user, c.i%8, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e.waitCalls(0)
	e.waitSessions(0)
	lines := e.cdrLines()
	if len(lines) != calls {
		t.Fatalf("%d CDRs for %d calls:\n%s", len(lines), calls, strings.Join(lines, "\n"))
	}
	// A request in a dialog of an ended call gets 481.
	if res, err := cs[0].out.Request(ctx(t), sip.INFO, []byte("x"), "text/plain"); err != nil || res.StatusCode != 481 {
		t.Fatalf("INFO after the end: %v %v", res, err)
	}
	waitGoroutines(t, base, 8)
}

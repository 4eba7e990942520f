package node

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func plainSpec(addr string) *pb.LegSpec {
	return &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{
		Codecs: mediatest.ProtoCodecs(mediatest.PBXAudio), Plain: &pb.PlainSpec{RemoteAddr: addr}}}}
}

func webSpec() *pb.LegSpec {
	return &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: "abcd"},
		Streams: []*pb.StreamSpec{{Codecs: mediatest.ProtoCodecs(mediatest.BrowserAudio)}}}
}

func TestCreateSessionRejectsBadRequests(t *testing.T) {
	n := newTestNode(t, nil)
	mod := func(f func(*pb.LegSpec)) *pb.LegSpec { l := webSpec(); f(l); return l }
	tests := []struct {
		name string
		req  *pb.CreateSessionRequest
		code codes.Code
		msg  string
	}{
		{"nil", nil, codes.InvalidArgument, "empty"},
		{"no legs", &pb.CreateSessionRequest{}, codes.InvalidArgument, "one or two legs"},
		{"three legs", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{webSpec(), webSpec(), webSpec()}}, codes.InvalidArgument, "one or two legs"},
		{"nil leg", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{nil}}, codes.InvalidArgument, "missing"},
		{"unknown kind", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.Kind = 7 })}}, codes.InvalidArgument, "kind"},
		{"no streams", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.Streams = nil })}}, codes.InvalidArgument, "streams"},
		{"address index", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.AddressIndex = 3 })}}, codes.InvalidArgument, "address_index"},
		{"payload type", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.Streams[0].Codecs[0].PayloadType = 200 })}}, codes.InvalidArgument, "payload type"},
		{"short password", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.Webrtc.LocalPwd = "short" })}}, codes.InvalidArgument, "password"},
		{"bad ufrag", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) { l.Webrtc.LocalUfrag = "a:b" })}}, codes.InvalidArgument, "ufrag"},
		{"bundle PT clash", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mod(func(l *pb.LegSpec) {
			l.Streams = append(l.Streams, &pb.StreamSpec{Codecs: mediatest.ProtoCodecs(mediatest.BrowserAudio)})
		})}}, codes.InvalidArgument, "payload type 0"},
		{"bad remote", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{plainSpec("not-an-address")}}, codes.InvalidArgument, "remote_addr"},
		{"bad suite", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{func() *pb.LegSpec {
			l := plainSpec("127.0.0.1:5004")
			l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "F8_128_HMAC_SHA1_80", RemoteKey: make([]byte, 30)}
			return l
		}()}}, codes.InvalidArgument, "suite"},
		{"bad SDES key", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{func() *pb.LegSpec {
			l := plainSpec("127.0.0.1:5004")
			l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: make([]byte, 3)}
			return l
		}()}}, codes.InvalidArgument, "remote key"},
		{"no shared ports", &pb.CreateSessionRequest{Legs: []*pb.LegSpec{func() *pb.LegSpec {
			l := plainSpec("127.0.0.1:5004")
			l.Streams[0].Plain.PortMode = pb.PortMode_PORT_MODE_SHARED
			return l
		}()}}, codes.FailedPrecondition, "shared"},
		{"long id", &pb.CreateSessionRequest{Id: strings.Repeat("x", 200), Legs: []*pb.LegSpec{webSpec()}}, codes.InvalidArgument, "id"},
	}
	for _, tt := range tests {
		_, err := n.CreateSession(ctx(t), tt.req)
		if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tt.name, err, tt.code, tt.msg)
		}
	}
	if n.Engine().Len() != 0 || n.Engine().PortsInUse() != 0 {
		t.Fatalf("failed creations left %d sessions, %d port pairs", n.Engine().Len(), n.Engine().PortsInUse())
	}
	// Duplicate ids, unknown sessions, and updates that change what cannot change.
	if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Id: "one", Legs: []*pb.LegSpec{webSpec(), plainSpec("127.0.0.1:5004")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Id: "one", Legs: []*pb.LegSpec{webSpec()}}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("duplicate id: %v", err)
	}
	for name, req := range map[string]*pb.UpdateSessionRequest{
		"leg count":   {Id: "one", Legs: []*pb.LegSpec{webSpec()}},
		"kind change": {Id: "one", Legs: []*pb.LegSpec{plainSpec("127.0.0.1:5004"), plainSpec("127.0.0.1:5004")}},
		"mode change": {Id: "one", Legs: []*pb.LegSpec{webSpec(), func() *pb.LegSpec {
			l := plainSpec("127.0.0.1:5004")
			l.Streams[0].Plain.PortMode = pb.PortMode_PORT_MODE_SHARED
			return l
		}()}},
	} {
		if _, err := n.UpdateSession(ctx(t), req); status.Code(err) == codes.OK {
			t.Errorf("update %s accepted", name)
		}
	}
	if _, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("update unknown: %v", err)
	}
	if _, err := n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("delete unknown: %v", err)
	}
	if _, err := n.GetSession(ctx(t), "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("get unknown: %v", err)
	}
}

func TestCapacityAndDrain(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxSessions = 2 })
	for i := 0; i < 2; i++ {
		if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{webSpec()}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{webSpec()}}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("beyond max sessions: %v", err)
	}
	n.Drain()
	ss, _ := n.ListSessions(ctx(t))
	n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: ss[0].Id})
	if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{webSpec()}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("while draining: %v", err)
	}
	if info, _ := n.NodeInfo(ctx(t)); !info.Draining || info.Sessions != 1 {
		t.Fatalf("NodeInfo %v", info)
	}
}

// TestPortRangeExhaustion: a node out of port pairs refuses new sessions
// cleanly and serves again once sessions end.
func TestPortRangeExhaustion(t *testing.T) {
	n := newTestNode(t, nil) // 20 pairs
	var ids []string
	for i := 0; ; i++ {
		s, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{plainSpec("127.0.0.1:5004"), plainSpec("127.0.0.1:5006")}})
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("session %d: %v", i, err)
			}
			break
		}
		ids = append(ids, s.Id)
		if i > 50 {
			t.Fatal("port range never ran out")
		}
	}
	if len(ids) != 10 {
		t.Fatalf("%d two-leg sessions fit in 20 pairs", len(ids))
	}
	for _, id := range ids {
		n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: id})
	}
	if n.Engine().PortsInUse() != 0 {
		t.Fatalf("%d pairs still in use", n.Engine().PortsInUse())
	}
	if _, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{plainSpec("127.0.0.1:5004")}}); err != nil {
		t.Fatal(err)
	}
}

// TestNoGoroutineLeak: connected calls that come and go leave no
// goroutines, sessions or ports behind.
func TestNoGoroutineLeak(t *testing.T) {
	n := newTestNode(t, nil)
	// Warm up pion and the node once so lazily started goroutines exist.
	func() {
		c := mediatest.NewCall(t, n, mediatest.CallOptions{})
		c.BrowserToPlain("warm", 2)
		n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: c.Sess.Id})
		c.Browser.Close()
		c.Plain.Close()
	}()
	waitNoHandshakes(t)
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := mediatest.NewCall(t, n, mediatest.CallOptions{})
			c.BrowserToPlain("leak", 3)
			if _, err := n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: c.Sess.Id}); err != nil {
				t.Fatal(err)
			}
			c.Browser.Close()
			c.Plain.Close()
		})
	}
	waitNoHandshakes(t)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
	if n.Engine().Len() != 0 || n.Engine().PortsInUse() != 0 {
		t.Fatalf("%d sessions, %d port pairs left", n.Engine().Len(), n.Engine().PortsInUse())
	}
}

// waitNoHandshakes waits until no goroutine of a DTLS association (the
// node's handshake goroutine, pion's behind it, the test browsers') is
// left: a goroutine baseline is only taken, or compared, once they are
// gone, whatever the machine's load (a fixed sleep was not enough).
func waitNoHandshakes(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, fn := range []string{"relay.(*Engine).runDTLS", "pion/dtls/v3.(*Conn)", "pion/webrtc/v4.(*PeerConnection)", "pion/ice/v4.(*Agent)"} {
			n += countStacks(fn)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d DTLS/ICE goroutine frames left:\n%s", n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzAPI feeds arbitrary create and update requests (protobuf from the
// wire, as a gRPC client sends them) to a node: errors are fine, panics and
// leaks are not, and a refused update leaves the session as it was.
func FuzzAPI(f *testing.F) {
	n := newTestNode(f, nil)
	seed, _ := proto.Marshal(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{webSpec(), plainSpec("127.0.0.1:5004")}})
	f.Add(seed, seed)
	f.Add([]byte{}, []byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, create, update []byte) {
		var cr pb.CreateSessionRequest
		if proto.Unmarshal(create, &cr) != nil {
			return
		}
		cr.Id = ""
		s, err := n.CreateSession(context.Background(), &cr)
		if err != nil {
			return
		}
		var ur pb.UpdateSessionRequest
		if proto.Unmarshal(update, &ur) == nil {
			ur.Id = s.Id
			before, _ := n.GetSession(context.Background(), s.Id)
			if _, err := n.UpdateSession(context.Background(), &ur); err != nil {
				// Refused: the session is exactly as it was (FuzzSessionChange
				// in relay checks the workers' tables and keys too).
				after, _ := n.GetSession(context.Background(), s.Id)
				if !proto.Equal(before, after) {
					t.Fatalf("refused update (%v) changed the session:\nbefore %v\nafter  %v", err, before, after)
				}
			}
		}
		n.GetSession(context.Background(), s.Id)
		if _, err := n.DeleteSession(context.Background(), &pb.DeleteSessionRequest{Id: s.Id}); err != nil {
			t.Fatal(err)
		}
		if n.Engine().Len() != 0 || n.Engine().PortsInUse() != 0 {
			t.Fatalf("leaked: %d sessions, %d port pairs", n.Engine().Len(), n.Engine().PortsInUse())
		}
	})
}

package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// newStoppedEngine is an engine whose workers were stopped after it
// started: commands are then applied at once by whoever posts them, under
// the worker's mutex, so a test can read the workers' tables (under that
// mutex) without racing them. It has a shared plain pair too.
func newStoppedEngine(tb testing.TB, workers int) *Engine {
	tb.Helper()
	var e *Engine
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		base := testPortBase()
		e, err = New(Config{
			Addrs:            []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			WebRTCPorts:      portalloc.Range{First: base, Last: base + 1},
			RTPPorts:         portalloc.Range{First: base + 2, Last: base + 9},
			PlainSharedPorts: portalloc.Range{First: base + 10, Last: base + 11},
			Workers:          workers,
			Certificate:      testCert,
			Fingerprint:      "00",
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	for _, w := range e.workers {
		w.io.Stop()
		<-w.exited
		w.io.Close()
		// A Loop nobody waits on, so that sockets can still be registered
		// (and are counted as such); Close closes it. An epoll one: it
		// needs no owner thread.
		if w.io, err = batchconn.NewLoop(batchconn.LoopConfig[*Leg]{Mode: batchconn.ModeMmsg, BatchSize: 1, BufSize: BufferSize}); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// image is everything a change can touch, as values and pointer
// identities: two images are equal when nothing observable changed.
type image struct {
	Proto     *pb.Session
	Ports     int
	Groups    []int64
	Cfg       *sessionConfig // identity: a refused change publishes nothing
	CfgValue  sessionConfig
	Specs     []*pb.LegSpec // compared with proto.Equal
	Tables    []string      // what the workers' tables hold for the session
	Streams   [][]*Stream
	ICE       []*iceCreds
	DTLS      []*dtlsParams
	Keys      []any // leg and stream SRTP contexts and SDES keys
	Restarted []string
	Timeout   int64
}

func imageOf(e *Engine, s *Session) image {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := image{Ports: e.PortsInUse(), Cfg: s.cfg.Load(), CfgValue: *s.cfg.Load(), Specs: s.specs, Timeout: s.mediaTimeout.Load()}
	for _, g := range e.groups {
		im.Groups = append(im.Groups, g.legs.Load())
	}
	im.Tables = workerTables(e, s)
	for _, l := range s.legs {
		im.Streams = append(im.Streams, slices.Clone(l.streams))
		im.ICE = append(im.ICE, l.ice.Load())
		im.DTLS = append(im.DTLS, l.dtls.params.Load())
		im.Keys = append(im.Keys, l.dec, l.enc)
		for _, st := range l.streams {
			im.Keys = append(im.Keys, st.sdes.Load(), st.keys, st.dec, st.enc)
		}
		r := "<none>"
		if l.restartedFor != nil {
			r = *l.restartedFor
		}
		im.Restarted = append(im.Restarted, r)
	}
	return im
}

// workerTables lists, sorted, the entries of every worker's tables that
// belong to s. The workers must be stopped (newStoppedEngine).
func workerTables(e *Engine, s *Session) []string {
	var out []string
	for _, w := range e.workers {
		w.mu.Lock()
		for u, l := range w.ufrags {
			if l.sess == s {
				out = append(out, fmt.Sprintf("w%d ufrag %s leg %d", w.id, u, l.index))
			}
		}
		for k, st := range w.shared {
			if st.leg.sess == s {
				out = append(out, fmt.Sprintf("w%d shared %v leg %d stream %d", w.id, k, st.leg.index, st.index))
			}
		}
		for sock, idx := range w.sockSlot {
			if sl := w.slots[idx]; sl.stream != nil && sl.stream.leg.sess == s {
				out = append(out, fmt.Sprintf("w%d socket %v leg %d stream %d rtcp %v", w.id, sock.Local, sl.stream.leg.index, sl.stream.index, sl.rtcp))
			}
		}
		w.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// equal compares two images; same also requires the very same published
// configuration (not only an equal one).
func (a image) equal(b image, same bool) bool {
	if !proto.Equal(a.Proto, b.Proto) || len(a.Specs) != len(b.Specs) {
		return false
	}
	for i := range a.Specs {
		if !proto.Equal(a.Specs[i], b.Specs[i]) {
			return false
		}
	}
	a.Proto, b.Proto, a.Specs, b.Specs = nil, nil, nil, nil
	if !same {
		a.Cfg, b.Cfg = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func (a image) String() string {
	return fmt.Sprintf("ports %d groups %v tables %v ice %v restarted %v\n%v", a.Ports, a.Groups, a.Tables, a.ICE, a.Restarted, a.Proto)
}

// checkPublished asserts that the workers hold exactly what the session
// needs: the sockets of every stream with ports of its own (on the owner
// worker only), the current and previous local ufrags on every worker, and
// the shared-port peers of its shared streams.
func checkPublished(t *testing.T, e *Engine, s *Session) {
	t.Helper()
	got := workerTables(e, s)
	s.mu.Lock()
	var want []string
	for _, w := range e.workers {
		for _, u := range s.tables.ufrags {
			want = append(want, fmt.Sprintf("w%d ufrag %s leg %d", w.id, u.ufrag, u.leg.index))
		}
		for _, sh := range s.tables.shared {
			want = append(want, fmt.Sprintf("w%d shared %v leg %d stream %d", w.id, sh.key, sh.stream.leg.index, sh.stream.index))
		}
	}
	cfg := s.cfg.Load()
	for _, l := range s.legs {
		if c := l.ice.Load(); c != nil && !slices.Contains(s.tables.ufrags, ufragEntry{l, c.localUfrag}) {
			t.Errorf("leg %d: current ufrag %q not published", l.index, c.localUfrag)
		}
		if len(l.streams) != len(cfg.legs[l.index].streams) {
			t.Errorf("leg %d: %d streams, configuration names %d", l.index, len(l.streams), len(cfg.legs[l.index].streams))
		}
		for _, st := range l.streams {
			if st.rtp != nil {
				for _, sock := range []bool{false, true} {
					local := st.rtp.Local
					if sock {
						local = st.rtcp.Local
					}
					want = append(want, fmt.Sprintf("w%d socket %v leg %d stream %d rtcp %v", s.owner.id, local, l.index, st.index, sock))
				}
			}
		}
	}
	s.mu.Unlock()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("worker tables\n got %q\nwant %q", got, want)
	}
}

func pcmuStream(pt uint32) *pb.StreamSpec {
	return &pb.StreamSpec{Codecs: []*pb.Codec{{PayloadType: pt, Name: "PCMU", ClockRate: 8000}}}
}

func plainStream(pt uint32, remote string) *pb.StreamSpec {
	s := pcmuStream(pt)
	s.Plain = &pb.PlainSpec{RemoteAddr: remote}
	return s
}

// TestRefusedUpdateChangesNothing is the reproduction from issue 10: an
// ICE restart plus a second plain stream with payload type 200 is refused,
// and must leave the session as it was (no new ufrag, no port pair held),
// so that a later valid update that adds the stream registers its sockets.
func TestRefusedUpdateChangesNothing(t *testing.T) {
	e := newStoppedEngine(t, 2)
	web := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: "brws"}, Streams: []*pb.StreamSpec{pcmuStream(0)}}
	plain := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{plainStream(0, "127.0.0.1:4000")}}
	s, err := e.CreateSession(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{web, plain}})
	if err != nil {
		t.Fatal(err)
	}
	checkPublished(t, e, s)
	before := imageOf(e, s)

	bad := proto.Clone(plain).(*pb.LegSpec)
	bad.Streams = append(bad.Streams, plainStream(200, "127.0.0.1:4002"))
	web2 := proto.Clone(web).(*pb.LegSpec)
	web2.Webrtc.RemoteUfrag = "brw2"
	_, err = e.UpdateSession(&pb.UpdateSessionRequest{Id: s.ID, Legs: []*pb.LegSpec{web2, bad}, IceRestart: []bool{true, false}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update with payload type 200: %v", err)
	}
	if after := imageOf(e, s); !after.equal(before, true) {
		t.Fatalf("a refused update changed the session:\nbefore %v\nafter  %v", before, after)
	}

	good := proto.Clone(plain).(*pb.LegSpec)
	good.Streams = append(good.Streams, plainStream(0, "127.0.0.1:4002"))
	if _, err := e.UpdateSession(&pb.UpdateSessionRequest{Id: s.ID, Legs: []*pb.LegSpec{web2, good}, IceRestart: []bool{true, false}}); err != nil {
		t.Fatal(err)
	}
	checkPublished(t, e, s)
	if e.PortsInUse() != 2 {
		t.Fatalf("%d port pairs in use, want 2", e.PortsInUse())
	}
	if c := s.legs[0].ice.Load(); c.localUfrag == before.ICE[0].localUfrag || c.prev == nil || c.prev.localUfrag != before.ICE[0].localUfrag {
		t.Fatalf("ICE restart: credentials %+v", c)
	}
	if _, err := e.DeleteSession(s.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if got := workerTables(e, s); len(got) != 0 || e.PortsInUse() != 0 {
		t.Fatalf("after deletion: tables %v, %d port pairs", got, e.PortsInUse())
	}
}

// TestICERestartIsIdempotent: UpdateSession is idempotent, ICE restarts
// included. A repeated request (a retry) keeps the credentials the first
// one issued; a restart the peer asks for with a new ufrag issues new ones.
func TestICERestartIsIdempotent(t *testing.T) {
	e := newStoppedEngine(t, 1)
	spec := func(remote string) []*pb.LegSpec {
		return []*pb.LegSpec{{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: remote}, Streams: []*pb.StreamSpec{pcmuStream(0)}}}
	}
	s, err := e.CreateSession(&pb.CreateSessionRequest{Legs: spec("one")})
	if err != nil {
		t.Fatal(err)
	}
	first := s.legs[0].ice.Load()
	restart := &pb.UpdateSessionRequest{Id: s.ID, Legs: spec("two"), IceRestart: []bool{true}}
	if _, err := e.UpdateSession(restart); err != nil {
		t.Fatal(err)
	}
	second := s.legs[0].ice.Load()
	if second.localUfrag == first.localUfrag || second.localPwd == first.localPwd {
		t.Fatal("ICE restart kept the local credentials")
	}
	im := imageOf(e, s)
	if _, err := e.UpdateSession(restart); err != nil {
		t.Fatal(err)
	}
	if again := imageOf(e, s); !again.equal(im, false) {
		t.Fatalf("a repeated restart request changed the session:\nbefore %v\nafter  %v", im, again)
	}
	if _, err := e.UpdateSession(&pb.UpdateSessionRequest{Id: s.ID, Legs: spec("three"), IceRestart: []bool{true}}); err != nil {
		t.Fatal(err)
	}
	third := s.legs[0].ice.Load()
	if third.localUfrag == second.localUfrag || third.prev.localUfrag != second.localUfrag || third.prev.prev != nil {
		t.Fatalf("second restart: %+v", third)
	}
	// The workers know the current and the previous ufrag, nothing older.
	checkPublished(t, e, s)
	if got := workerTables(e, s); len(got) != 2 {
		t.Fatalf("tables after two restarts: %v", got)
	}
}

// FuzzSessionChange creates a session and updates it with arbitrary
// requests (protobuf from the wire). A refused creation must leave nothing
// behind, a refused update must leave the session exactly as it was
// (ports, ufrags, sockets registered with the workers, keys, credentials,
// configuration), and an accepted one must leave the workers' tables
// holding exactly what the session needs.
func FuzzSessionChange(f *testing.F) {
	e := newStoppedEngine(f, 2)
	web := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: "brws"}, Streams: []*pb.StreamSpec{pcmuStream(0)}}
	plain := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{plainStream(0, "127.0.0.1:4000")}}
	shared := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{plainStream(8, "127.0.0.1:4100")}}
	shared.Streams[0].Plain.PortMode = pb.PortMode_PORT_MODE_SHARED
	sdes := proto.Clone(plain).(*pb.LegSpec)
	sdes.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: bytes.Repeat([]byte{1}, 30)}
	mustMarshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	with := func(l *pb.LegSpec, fn func(*pb.LegSpec)) *pb.LegSpec {
		c := proto.Clone(l).(*pb.LegSpec)
		fn(c)
		return c
	}
	create := mustMarshal(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{web, plain}})
	createShared := mustMarshal(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{web, shared}})
	createSDES := mustMarshal(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{sdes, plain}})
	for _, seed := range []struct {
		create []byte
		update *pb.UpdateSessionRequest
	}{
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, plain}}},
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{with(web, func(l *pb.LegSpec) { l.Webrtc.RemoteUfrag = "new!" }), with(plain, func(l *pb.LegSpec) {
			l.Streams = append(l.Streams, plainStream(200, "127.0.0.1:4002"))
		})}, IceRestart: []bool{true}}},
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, with(plain, func(l *pb.LegSpec) {
			l.Streams = append(l.Streams, plainStream(0, "127.0.0.1:4002"), plainStream(0, "127.0.0.1:4004"))
		})}, IceRestart: []bool{true, true}}},
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{with(web, func(l *pb.LegSpec) {
			l.Webrtc.DtlsRole = pb.DTLSRole_DTLS_ROLE_CLIENT
			l.Webrtc.RemoteFingerprint = &pb.Fingerprint{Algorithm: "sha-256", Value: "AB"}
			l.Streams = append(l.Streams, pcmuStream(0))
		}), plain}}},
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, with(plain, func(l *pb.LegSpec) {
			l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: bytes.Repeat([]byte{2}, 30)}
			l.Streams = append(l.Streams, plainStream(0, "not an address"))
		})}}},
		{create, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, with(plain, func(l *pb.LegSpec) {
			for i := 0; i < 5; i++ { // more than the 4 pairs of the range: the fifth fails
				l.Streams = append(l.Streams, plainStream(0, "127.0.0.1:4002"))
			}
		})}}},
		{createShared, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, with(shared, func(l *pb.LegSpec) { l.Streams[0].Plain.RemoteAddr = "127.0.0.1:4200" })}}},
		{createShared, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{web, with(shared, func(l *pb.LegSpec) {
			l.Streams[0].Plain.RemoteAddr = "127.0.0.1:4200"
			l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: []byte{1}}
		})}}},
		{createSDES, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{with(sdes, func(l *pb.LegSpec) {
			l.Streams[0].Plain.Sdes.RemoteKey = bytes.Repeat([]byte{3}, 30)
			l.Streams = append(l.Streams, plainStream(0, "127.0.0.1:4002"))
			l.Streams[1].Plain.Sdes = &pb.SDESCrypto{Suite: "F8", RemoteKey: []byte{1}}
		}), plain}}},
		{createSDES, &pb.UpdateSessionRequest{Legs: []*pb.LegSpec{with(sdes, func(l *pb.LegSpec) { l.Streams[0].Plain.Sdes = nil }), plain}, MediaTimeoutS: 5}},
	} {
		f.Add(seed.create, mustMarshal(seed.update))
	}
	f.Add([]byte{}, []byte{})
	base := make([]int64, len(e.groups))
	f.Fuzz(func(t *testing.T, create, update []byte) {
		var cr pb.CreateSessionRequest
		if proto.Unmarshal(create, &cr) != nil {
			return
		}
		cr.Id = ""
		s, err := e.CreateSession(&cr)
		if err != nil {
			if e.Len() != 0 || e.PortsInUse() != 0 {
				t.Fatalf("refused creation left %d sessions, %d port pairs", e.Len(), e.PortsInUse())
			}
			for i, g := range e.groups {
				if g.legs.Load() != base[i] {
					t.Fatalf("refused creation left group %d with %d legs", i, g.legs.Load())
				}
			}
			for _, w := range e.workers {
				if len(w.ufrags) != 0 || len(w.shared) != 0 || len(w.sockSlot) != len(w.groupSocks) {
					t.Fatalf("refused creation left worker tables: %d ufrags, %d shared, %d sockets", len(w.ufrags), len(w.shared), len(w.sockSlot))
				}
			}
			return
		}
		checkPublished(t, e, s)
		var ur pb.UpdateSessionRequest
		if proto.Unmarshal(update, &ur) == nil {
			ur.Id = s.ID
			before := imageOf(e, s)
			if _, err := e.UpdateSession(&ur); err != nil {
				if after := imageOf(e, s); !after.equal(before, true) {
					t.Fatalf("refused update (%v) changed the session:\nbefore %v\nafter  %v", err, before, after)
				}
			}
			checkPublished(t, e, s)
			// The same request again changes nothing (idempotent).
			again := imageOf(e, s)
			e.UpdateSession(&ur)
			if after := imageOf(e, s); !after.equal(again, false) {
				t.Fatalf("repeated update changed the session:\nbefore %v\nafter  %v", again, after)
			}
		}
		if _, err := e.DeleteSession(s.ID, "fuzz"); err != nil {
			t.Fatal(err)
		}
		if got := workerTables(e, s); len(got) != 0 || e.Len() != 0 || e.PortsInUse() != 0 {
			t.Fatalf("after deletion: tables %v, %d sessions, %d port pairs", got, e.Len(), e.PortsInUse())
		}
	})
}

package server

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/siptest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// startRemoteTrunk is startTrunk with the dataplane node served over gRPC,
// as strait --dataplane grpc://... runs it; stop kills the node (its gRPC
// server and its sessions), as a crash of strait-dataplane would.
func startRemoteTrunk(t *testing.T, mutate func(*config.Config)) (tr *trunk, stop func()) {
	t.Helper()
	n := newNode(t)
	gs := grpc.NewServer()
	pb.RegisterDataplaneServer(gs, pb.NewServer(n))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.State = "memory"
	cfg.CDRFile = filepath.Join(t.TempDir(), "cdr.jsonl")
	cfg.Upstream = []string{"sip:" + pbx.Addr}
	cfg.Dataplane = []string{"grpc://" + lis.Addr().String()}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(Options{Config: cfg, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pbx.SetPeer(srv.SIPAddr())
	b, err := siptest.NewBrowser(srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	e := &env{t: t, srv: srv, node: n, cdr: cfg.CDRFile}
	return &trunk{env: e, pbx: pbx, reg: reg, browser: b}, func() { gs.Stop(); n.Close() }
}

// openCalls reads a copy of a journal: the calls it holds open.
func openCalls(t *testing.T, path string) []cdr.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "journal")
	os.WriteFile(cp, b, 0o600)
	j, err := cdr.OpenFileJournal(cp)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	left, err := j.Open()
	if err != nil {
		t.Fatal(err)
	}
	return left
}

var packetsIn = regexp.MustCompile(`"packets_in":([1-9][0-9]*)`)

// Issue 8 item 9. A call whose dataplane node died stayed "answered" with
// no media until the media timeout (36 s), and its CDR said 0 packets.
// Now the node's loss ends the call within seconds: BYE to both sides,
// and a CDR with cause "media node lost" and the media counted until the
// last interim.
func TestNodeLossEndsCalls(t *testing.T) {
	tr, kill := startRemoteTrunk(t, func(c *config.Config) { c.CDRInterim = time.Second })
	tr.register(t)
	call, inc, _ := tr.establish(t)
	journal := tr.cdr + ".journal"
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(journal)
		if packetsIn.Match(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no interim with media in the journal:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	killed := time.Now()
	kill()
	if err := call.WaitEnded(dpool.LossGrace + 5*time.Second); err != nil {
		t.Fatal("the browser got no BYE after its media node died")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE after the media node died")
	}
	took := time.Since(killed)
	tr.waitCalls(0)
	if n := sum(tr.srv.Pool.Sessions()); n != 0 {
		t.Fatalf("the pool still counts %d sessions", n)
	}
	lines := tr.cdrLines()
	last := lines[len(lines)-1]
	var rec struct {
		Reason string
		Cause  int
		Media  []struct {
			PacketsIn uint64 `json:"packets_in"`
		}
	}
	if err := json.Unmarshal([]byte(last), &rec); err != nil {
		t.Fatal(err)
	}
	var packets uint64
	for _, m := range rec.Media {
		packets += m.PacketsIn
	}
	if rec.Reason != "media node lost" || packets == 0 {
		t.Fatalf("CDR %s: want reason media node lost and the packets counted", last)
	}
	if left := openCalls(t, journal); len(left) != 0 {
		t.Fatalf("the journal still holds %d calls: %v", len(left), left)
	}
	t.Logf("node killed: both sides got BYE after %s; CDR cause %d %q, %d packets in", took.Round(100*time.Millisecond),
		rec.Cause, rec.Reason, packets)
}

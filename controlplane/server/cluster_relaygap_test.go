package server

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// A request relayed toward a browser while its holder's connection to
// Redis is down is not lost (SIP over the WebSocket is not retransmitted,
// RFC 3261 section 17.1.1.2): the PBX's INVITE reaches A, the browser's
// WebSocket is on B, and B is cut off from Redis (its connections closed,
// new ones refused: as a network cut or a Redis failover does) when A
// relays the INVITE. It waits in B's queue; once B reaches Redis again the
// browser gets it exactly once, and its answer reaches the PBX.
func TestClusterRelayAcrossHolderCut(t *testing.T) {
	r := newClusterRig(t)
	a := r.member("cp-a")
	px := statetest.NewCutProxy(t, r.redis.Addr)
	stB, err := state.OpenRedis(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	bsrv := r.memberVia("cp-b", stB)
	b, err := siptest.NewBrowser(bsrv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	key := bindingOf(t, a, "cp-b").Key
	r.pbx.SetPeer(a.SIPAddr())
	admin := redis.NewClient(&redis.Options{Addr: r.redis.Addr})
	t.Cleanup(func() { admin.Close() })
	queued := func() int64 {
		n, _ := admin.XLen(ctx(t), "strait:queue:flows/cp-b").Result()
		return n
	}
	before := queued()

	px.Cut()
	plain := newPlain(t)
	call, err := r.pbx.Invite(ctx(t), key, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A queues the INVITE for B", 5*time.Second, func() bool { return queued() > before })
	select {
	case <-b.Incoming:
		t.Fatal("the browser got the INVITE while its holder was cut off")
	default:
	}

	px.Restore()
	inc, err := b.WaitCall(10 * time.Second)
	if err != nil {
		t.Fatalf("the browser got no INVITE once its holder was back: %v", err)
	}
	inc.Reject(486, "Busy Here")
	if res, err := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("the PBX's INVITE: %v %v, want the browser's 486", res, err)
	}
	waitFor(t, "the call ends on A", 10*time.Second, func() bool {
		return len(a.Engine.Calls()) == 0 && sum(a.Pool.Sessions()) == 0
	})
	// Exactly once: B wrote the INVITE and the ACK of the 486 on the
	// browser's WebSocket, nothing twice.
	reg := bsrv.Metrics.Registry
	relayed := func(direction, result string) float64 {
		return metricValue(t, reg, "strait_cluster_relayed_messages_total", map[string]string{"direction": direction, "result": result})
	}
	waitFor(t, "B writes the ACK", 5*time.Second, func() bool { return relayed("out", "ok") >= 2 })
	if n, dup := relayed("out", "ok"), relayed("queue", "duplicate"); n != 2 || dup != 0 {
		t.Fatalf("B wrote %v messages to the browser (want the INVITE and the ACK), %v duplicates", n, dup)
	}
	select {
	case d := <-b.Incoming:
		t.Fatalf("a second call reached the browser: %v", d)
	default:
	}
}

package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// A real redis-server restarted without persistence loses the nonce
// counts: the Writer finds the store lost (OnLost), the nonces issued
// before are forgotten, so a count already used does not pass again and
// a client with the old nonce gets stale=true (RFC 7616 section 3.3),
// whose fresh nonce then authenticates.
func TestDigestNoncesAfterRedisCameBackEmpty(t *testing.T) {
	rd := statetest.StartRedis(t)
	st, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := state.NewWriter(state.WriterConfig{Store: st})
	defer w.Close()
	nonces := &StoreNonces{W: w}
	forgot := make(chan struct{}, 1)
	w.OnLost(func() {
		nonces.ForgetBefore(time.Now())
		select {
		case forgot <- struct{}{}:
		default:
		}
	})
	d := NewDigestWith(DigestConfig{Realm: "strait", Users: map[string]string{"alice": "secret"}, Nonces: nonces})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := w.CheckStore(ctx); err != nil { // the generation this process sees
		t.Fatal(err)
	}

	cr := answerChallenge(t, d, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Granted {
		t.Fatalf("first use: %+v", r)
	}
	// Nonce times are whole seconds: the loss is seen in a later one.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	rd.Restart() // killed, started again empty
	// The Writer's own ping (every second) or this check sees it first.
	for seen := false; !seen; {
		_, err := w.CheckStore(ctx)
		select {
		case <-forgot:
			seen = true
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("the loss was not seen: %v", err)
		}
	}
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Stale {
		t.Fatalf("the count used before the loss, again: %+v, want stale (never a replay through)", r)
	}
	chal, _ := digest.ParseChallenge(d.Challenges(false)[0])
	chal.Nonce = cr.Nonce
	next, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:x", Username: "alice", Password: "secret", Count: 2})
	if r := check(t, d, sip.REGISTER, "sip:x", next.String()); r.Verdict != Stale {
		t.Fatalf("the old nonce's next count: %+v, want stale", r)
	}
	if v := d.Challenge(true); !containsStale(v) {
		t.Fatalf("the stale challenge: %s", v)
	}
	// The client answers the stale challenge's fresh nonce at once.
	fresh := answerChallenge(t, d, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d, sip.REGISTER, "sip:x", fresh.String()); r.Verdict != Granted {
		t.Fatalf("a fresh nonce after the loss: %+v", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", fresh.String()); r.Reason != ReasonReplay {
		t.Fatalf("its count again: %+v, want a replay refused", r)
	}
}

func containsStale(challenge string) bool {
	c, err := digest.ParseChallenge(challenge)
	return err == nil && c.Stale
}

// The window before a loss is noticed is closed: a count used before a
// real redis-server restarted empty is refused when presented again at
// once, before the Writer's ping (here: never within the test) could see
// the loss. The count's own script finds the store's generation gone, and
// the Writer checks the store at once (OnLost). The client's fresh nonce
// then authenticates once. A control plane that starts after the loss
// (the same digest key: a survivor wrote it again) never saw the old
// generation: it refuses the old count too (the new generation is later
// than the nonce).
func TestDigestNonceReplayRefusedBeforeLossIsPinged(t *testing.T) {
	rd := statetest.StartRedis(t)
	st, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := state.NewWriter(state.WriterConfig{Store: st, PingInterval: time.Hour})
	defer w.Close()
	nonces := &StoreNonces{W: w}
	w.OnLost(func() { nonces.ForgetBefore(time.Now()) })
	key := []byte("0123456789abcdef0123456789abcdef")
	users := map[string]string{"alice": "secret"}
	d := NewDigestWith(DigestConfig{Realm: "strait", Users: users, Nonces: nonces, Key: key})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cr := answerChallenge(t, d, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Granted {
		t.Fatalf("first use: %+v", r)
	}
	rd.Restart() // killed, started again empty, at once (no second boundary waited for)
	// Each presentation is refused; the first that reaches Redis has the
	// Writer see the loss.
	for w.Lost() == 0 {
		if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Stale {
			t.Fatalf("the count used before the loss, again: %+v, want stale (never a replay through)", r)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the loss was not seen")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r := check(t, d, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Stale {
		t.Fatalf("after the loss was seen: %+v, want stale", r)
	}
	fresh := answerChallenge(t, d, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d, sip.REGISTER, "sip:x", fresh.String()); r.Verdict != Granted {
		t.Fatalf("a fresh nonce after the loss: %+v", r)
	}
	if r := check(t, d, sip.REGISTER, "sip:x", fresh.String()); r.Reason != ReasonReplay {
		t.Fatalf("its count again: %+v, want a replay refused", r)
	}

	// A control plane started after the loss.
	st2, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	w2 := state.NewWriter(state.WriterConfig{Store: st2, PingInterval: time.Hour})
	defer w2.Close()
	if w2.Generation() != w.Generation() || w2.Generation() == "" {
		t.Fatalf("generations %q and %q", w2.Generation(), w.Generation())
	}
	d2 := NewDigestWith(DigestConfig{Realm: "strait", Users: users, Nonces: &StoreNonces{W: w2}, Key: key})
	if r := check(t, d2, sip.REGISTER, "sip:x", cr.String()); r.Verdict != Stale {
		t.Fatalf("the count used before the loss, at a control plane started since: %+v, want stale", r)
	}
	if r := check(t, d2, sip.REGISTER, "sip:x", fresh.String()); r.Reason != ReasonReplay {
		t.Fatalf("the fresh nonce's count, at the other control plane: %+v, want a replay refused", r)
	}
	fresh2 := answerChallenge(t, d2, 0, "alice", "secret", "REGISTER", "sip:x")
	if r := check(t, d2, sip.REGISTER, "sip:x", fresh2.String()); r.Verdict != Granted {
		t.Fatalf("a fresh nonce at the other control plane: %+v", r)
	}
}

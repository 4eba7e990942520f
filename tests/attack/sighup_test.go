package attack

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// heldCall is a legitimate call to echo kept up across what a test does.
type heldCall struct {
	phone *siptest.Phone
	call  *siptest.Dialog
	media *mediatest.Browser
	// seq is the sequence number the next echoes check starts from: each
	// check sends new ones, as the browser's stream never goes back (a
	// second check from the same number was refused as replays, as many as
	// the first check had sent before its echoes came back).
	seq uint16
}

// holdCall registers the legitimate user and calls echo, media both ways.
func (tg *target) holdCall() *heldCall {
	tg.t.Helper()
	ctx := tg.ctx(30 * time.Second)
	phone, err := siptest.NewBrowser(tg.HTTPAddr, legitUser)
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.t.Cleanup(phone.Close)
	if res, err := phone.Register(ctx, legitPassword, 300); err != nil || res.StatusCode != 200 {
		tg.t.Fatalf("REGISTER: %v %v", res, err)
	}
	media, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.t.Cleanup(func() { media.Close() })
	call, err := phone.Invite(ctx, "echo", []byte(media.Offer))
	if err != nil {
		tg.t.Fatal(err)
	}
	res, err := call.WaitAnswer(ctx, legitPassword)
	if err != nil || res.StatusCode != 200 {
		tg.t.Fatalf("call to echo: %v %v", res, err)
	}
	if err := call.Ack(ctx); err != nil {
		tg.t.Fatal(err)
	}
	if err := media.Accept(string(res.Body())); err != nil {
		tg.t.Fatal(err)
	}
	if err := media.WaitConnected(ctx); err != nil {
		tg.t.Fatal(err)
	}
	h := &heldCall{phone: phone, call: call, media: media, seq: 1000}
	h.echoes(tg)
	return h
}

// echoes checks that the call's media still comes back.
func (h *heldCall) echoes(tg *target) {
	tg.t.Helper()
	const count = 20
	err := echoedFrom(tg.ctx(10*time.Second), h.media, h.seq, count, 10)
	h.seq += count
	if err != nil {
		tg.t.Fatalf("the call's media: %v", err)
	}
}

// Issue 8 item 10. SIGHUP killed strait without its shutdown path: calls
// dropped with no BYE and no CDR. Now it rereads the configuration and
// applies what can change live (here the dial plan, from the file), while
// the process, its calls and their media carry on.
func TestSIGHUPReloadsWithoutDropping(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "strait.yaml")
	if err := os.WriteFile(file, []byte("max_calls_per_user: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startTarget(t, targetConfig{Args: []string{"--config", file}})
	held := tg.holdCall()

	// Echo leaves the allowlist; SIGHUP.
	if err := os.WriteFile(file, []byte("max_calls_per_user: 10\nallow_dial: [\"_1XXX\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tg.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "strait to log the reload", func() (bool, string) {
		if tg.Exited() {
			t.Fatalf("strait exited on SIGHUP (status %d):\n%s", tg.ExitCode(), tg.Log())
		}
		return strings.Contains(tg.Log(), "configuration reloaded"), "not yet"
	})
	if tg.Exited() {
		t.Fatal("strait exited on SIGHUP")
	}
	held.echoes(tg)

	// The new plan holds for new calls.
	media, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	ctx := tg.ctx(20 * time.Second)
	call, err := held.phone.Invite(ctx, "echo", []byte(media.Offer))
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := call.WaitAnswer(ctx, legitPassword); res == nil || res.StatusCode != 403 {
		t.Fatalf("a new call to echo after the reload: %v, want 403", res)
	}
	tg.waitCounted(1, "strait_calls_refused_total", "reason=destination")

	// The held call ends normally and leaves its record.
	if err := held.call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the held call's CDR", func() (bool, string) {
		var out struct {
			CDRs []struct{ Reason string } `json:"cdrs"`
		}
		if _, err := tg.Do(ctx, "GET", "/v1/cdrs", nil, &out); err != nil {
			return false, err.Error()
		}
		for _, r := range out.CDRs {
			if r.Reason == "caller bye" {
				return true, ""
			}
		}
		return false, "no CDR with reason caller bye"
	})
	t.Logf("SIGHUP: strait alive, the call in progress kept its media, the new dial plan refused echo (before: the process died)")
}

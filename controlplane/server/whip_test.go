package server

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// needTool skips a test whose third-party peer is missing, and fails it
// under CI=true, where scripts/install-test-deps.sh must have installed it.
func needTool(t *testing.T, what string, cmd ...string) {
	t.Helper()
	if err := exec.Command(cmd[0], cmd[1:]...).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (scripts/install-test-deps.sh installs it): %v", what, err)
		}
		t.Skipf("%s missing (scripts/install-test-deps.sh installs it): %v", what, err)
	}
}

// debianPython is the interpreter scripts/install-test-deps.sh installs
// python3-aiortc for.
const debianPython = "/usr/bin/python3"

// TestWHIP publishes audio from aiortc (Python's WebRTC stack, not pion)
// over WHIP (RFC 9725) to a SIP phone registered on UDP: 201 with
// application/sdp and Location, the phone's call carries the publisher's
// RTP, and DELETE on the Location hangs up with a BYE. curl checks the
// refusals: no token 401, not SDP 415, PATCH 405.
func TestWHIP(t *testing.T) {
	// Debian's python3, where apt installs aiortc (a pyenv or venv
	// python3 first in PATH would not see it).
	needTool(t, "python3-aiortc", debianPython, "-c", "import aiortc")
	needTool(t, "curl", "curl", "--version")
	tok, key, _ := apiauth.NewToken("obs", "studio", []string{apiauth.ScopeCall})
	e := start(t, func(c *config.Config) {
		c.Users = []string{"carol:c-secret", "studio:s-secret"}
		c.APIKeys = []string{key}
	})
	carol, err := siptest.NewUDP(e.srv.SIPAddr(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close()
	if res, err := carol.Register(ctx(t), "c-secret", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("carol REGISTER: %v %v", res, err)
	}
	plain := newPlain(t)
	url := "http://" + e.srv.HTTPAddr() + "/whip/carol"

	curl := func(args ...string) string {
		out, err := exec.Command("curl", append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		return string(out)
	}
	if code := curl("-X", "POST", "-H", "Content-Type: application/sdp", "--data-binary", "v=0\r\n", url); code != "401" {
		t.Fatalf("curl without a token: %s", code)
	}
	if code := curl("-X", "POST", "-H", "Authorization: Bearer "+tok, "-H", "Content-Type: application/json", "--data-binary", "{}", url); code != "415" {
		t.Fatalf("curl with JSON: %s", code)
	}

	cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, debianPython, "testdata/whip_aiortc.py", url, tok, "2")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = tWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	inc, err := carol.WaitCall(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if from := inc.Invite.From().Address.User; from != "studio" {
		t.Errorf("the call comes from %q, want the key's user studio", from)
	}
	if err := inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "recvonly", false)); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	rtp := 0
	deadline := time.After(30 * time.Second)
	for rtp < 25 {
		select {
		case pk := <-plain.Received:
			if pk.RTP != nil {
				rtp++
			}
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("aiortc ended after %d RTP packets: %v", rtp, got)
			}
			k, v, _ := strings.Cut(l, " ")
			got[k] = v
		case <-deadline:
			t.Fatalf("%d RTP packets reached the phone; aiortc said %v", rtp, got)
		}
	}
	for l := range lines {
		k, v, _ := strings.Cut(l, " ")
		got[k] = v
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("aiortc: %v (%v)", err, got)
	}
	if got["status"] != "201" || !strings.HasPrefix(got["location"], "/whip/sessions/") || got["content-type"] != "application/sdp" || got["delete"] != "200" {
		t.Fatalf("WHIP exchange: %v", got)
	}
	if err := inc.WaitEnded(10 * time.Second); err != nil {
		t.Fatalf("the phone's call did not end after DELETE: %v", err)
	}
	if code := curl("-X", "PATCH", "-H", "Authorization: Bearer "+tok, "-H", "Content-Type: application/trickle-ice-sdpfrag",
		"--data-binary", "a=end-of-candidates", "http://"+e.srv.HTTPAddr()+got["location"]); code != "405" {
		t.Fatalf("PATCH: %s", code)
	}
	e.waitSessions(0)
}

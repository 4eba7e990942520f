// Package statetest starts a real redis-server for tests: on a free
// loopback port, with no persistence, stopped at the end of the test.
package statetest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server a test started.
type Redis struct {
	// Addr is its HOST:PORT; URL is redis://Addr/0.
	Addr, URL string

	t    testing.TB
	cmd  *exec.Cmd
	port int
	args []string
}

// StartRedis starts redis-server on a free loopback port. The test is
// skipped when redis-server is not installed (and fails with CI=true:
// scripts/install-test-deps.sh installs it).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (scripts/install-test-deps.sh installs it)")
		}
		t.Skip("redis-server is not installed; run scripts/install-test-deps.sh")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &Redis{t: t, port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.URL = "redis://" + r.Addr + "/0"
	r.args = []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no"}
	r.cmd = exec.Command(bin, r.args...)
	r.start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	bin := r.cmd.Path
	r.cmd = exec.Command(bin, r.args...)
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if !sent && strings.Contains(sc.Text(), "Ready to accept connections") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			r.t.Fatal("redis-server exited before it was ready")
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("redis-server not ready within 10 s")
	}
}

// Stop stops the server (SIGKILL: a Redis that vanishes); Restart starts
// it again on the same port, empty.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// Restart starts a stopped server again on the same port.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}

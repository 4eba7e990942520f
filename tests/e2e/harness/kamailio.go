package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// KamailioConfig describes one Kamailio proxy (tests/e2e/kamailio/proxy.cfg)
// between strait and a PBX stand-in.
type KamailioConfig struct {
	// Name names the run's artifacts (default "kamailio").
	Name string
	// Strait is where requests for strait go (host:port, its SIP address).
	Strait string
	// PBX is where strait's requests go (host:port).
	PBX string
	// PBXTransport is the transport toward the PBX: "udp" (default) or
	// "tcp"; both sides listen on UDP and TCP.
	PBXTransport string
	// RecordRoute makes the proxy record-route dialogs.
	RecordRoute bool
}

// Kamailio is a running Kamailio proxy.
type Kamailio struct {
	*Process
	// StraitSide is the port strait's --upstream names; PBXSide the port
	// the PBX sends to. Both listen on UDP and TCP on 127.0.0.1.
	StraitSide, PBXSide int
}

// StraitAddr is the address strait's --upstream names.
func (k *Kamailio) StraitAddr() string { return hostPort(k.StraitSide) }

// PBXAddr is the address the PBX sends its requests to.
func (k *Kamailio) PBXAddr() string { return hostPort(k.PBXSide) }

// KamailioVersion returns the first line of `kamailio -v`.
func KamailioVersion() string {
	out, err := exec.Command("kamailio", "-v").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "version:"))
}

// StartKamailio starts Kamailio with proxy.cfg (stopped at the end of the
// test) and waits until it accepts TCP connections on both sides.
func (e *Env) StartKamailio(cfg KamailioConfig) *Kamailio {
	e.t.Helper()
	name := cfg.Name
	if name == "" {
		name = "kamailio"
	}
	dir := e.Artifact(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	k := &Kamailio{StraitSide: FreePort(e.t), PBXSide: FreePort(e.t)}
	pbxProto := strings.ToLower(cfg.PBXTransport)
	if pbxProto == "" {
		pbxProto = "udp"
	}
	pbxURI := "sip:" + cfg.PBX
	if pbxProto != "udp" {
		pbxURI += ";transport=" + pbxProto
	}
	argv := []string{"kamailio", "-f", filepath.Join(E2EDir(), "kamailio", "proxy.cfg"),
		"-DD", "-E", "-n", "2", "-m", "32", "-M", "4", "-w", dir, "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"),
		"-A", "STRAIT_SIDE=" + strconv.Itoa(k.StraitSide), "-A", "PBX_SIDE=" + strconv.Itoa(k.PBXSide),
		"-A", fmt.Sprintf("STRAIT_SOCKET=\"udp:%s\"", k.StraitAddr()),
		"-A", fmt.Sprintf("PBX_SOCKET=\"%s:%s\"", pbxProto, k.PBXAddr()),
		"-A", fmt.Sprintf("STRAIT_URI=\"sip:%s\"", cfg.Strait),
		"-A", fmt.Sprintf("PBX_URI=\"%s\"", pbxURI),
	}
	for _, port := range []int{k.StraitSide, k.PBXSide} {
		argv = append(argv, "-l", fmt.Sprintf("udp:%s", hostPort(port)), "-l", fmt.Sprintf("tcp:%s", hostPort(port)))
	}
	if cfg.RecordRoute {
		argv = append(argv, "-A", "WITH_RR")
	}
	p, err := e.startProcess(name, dir, nil, 3*time.Second, argv...)
	if err != nil {
		e.t.Fatal(err)
	}
	k.Process = p
	e.Step(name+" listening", 10*time.Second, func(ctx context.Context) error {
		for _, addr := range []string{k.StraitAddr(), k.PBXAddr()} {
			for {
				if p.Exited() {
					return fmt.Errorf("kamailio exited: %v\n%s", p.err, lastLines(p.Log(), 30))
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("kamailio not listening on %s: %w", addr, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		return nil
	})
	return k
}

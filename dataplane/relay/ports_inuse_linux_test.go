package relay

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/portalloc"
)

// holdPortEnv makes the test binary, run as TestHoldPort, hold a UDP
// port with SO_REUSEPORT until its stdin closes: another strait on the
// same media ports, as a separate process.
const holdPortEnv = "STRAIT_RELAY_TEST_HOLD_PORT"

func TestHoldPort(t *testing.T) {
	addr := os.Getenv(holdPortEnv)
	if addr == "" {
		t.Skip("helper process for TestPortsInUse")
	}
	s, err := batchconn.Listen(netip.MustParseAddrPort(addr), batchconn.Options{ReusePort: true})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	defer s.Close()
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// holdPort runs TestHoldPort in a child process holding addr, and returns
// its pid; the child exits at the end of the test.
func holdPort(t *testing.T, addr netip.AddrPort) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldPort$")
	cmd.Env = append(os.Environ(), holdPortEnv+"="+addr.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper process: %q", line)
	}
	return cmd.Process.Pid
}

// A second relay on media ports another socket holds refuses to start,
// naming the ports and, when /proc tells, the process; without the check
// SO_REUSEPORT let it bind beside the first and the kernel spread the
// peers' packets over both (issue 11: calls to the first stayed
// "connecting").
func TestPortsInUse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool // the held port is a shared plain port, not a WebRTC one
		child  bool // held by another process (else by a socket of this one)
	}{
		{"webrtc port, another process", false, true},
		{"webrtc port, this process", false, false},
		{"shared plain port (odd), another process", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Ports nobody else on this machine holds, to start with.
			var cfg Config
			var base uint16
			for range 20 {
				base = testPortBase()
				cfg = Config{
					Addrs:            []netip.Addr{netip.MustParseAddr("127.0.0.1")},
					WebRTCPorts:      portalloc.Range{First: base, Last: base + 1},
					RTPPorts:         portalloc.Range{First: base + 2, Last: base + 9},
					PlainSharedPorts: portalloc.Range{First: base + 10, Last: base + 13},
					Workers:          1,
					Certificate:      testCert,
					Fingerprint:      "00",
				}
				if checkPortsFree(&cfg) == nil {
					break
				}
			}
			held := netip.AddrPortFrom(cfg.Addrs[0], base+1)
			if tc.shared {
				held = netip.AddrPortFrom(cfg.Addrs[0], base+13)
			}
			pid := 0
			if tc.child {
				pid = holdPort(t, held)
			} else {
				s, err := batchconn.Listen(held, batchconn.Options{ReusePort: true})
				if err != nil {
					t.Skipf("port %v not free: %v", held, err)
				}
				defer s.Close()
			}
			e, err := New(cfg)
			if err == nil {
				e.Close()
				t.Fatalf("New started on %v, which another socket holds", held)
			}
			var inUse *PortsInUseError
			if !errors.As(err, &inUse) {
				t.Fatalf("New: %v, want a PortsInUseError", err)
			}
			if len(inUse.Ports) != 1 || inUse.Ports[0] != held || !strings.Contains(err.Error(), held.String()) {
				t.Fatalf("ports in use %v (%v), want %v", inUse.Ports, err, held)
			}
			if tc.child {
				if len(inUse.PIDs) != 1 || inUse.PIDs[0] != pid || !strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)+" (") {
					t.Fatalf("owners %v %v, want pid %d: %v", inUse.PIDs, inUse.Owners, pid, err)
				}
			} else if len(inUse.PIDs) != 0 {
				t.Fatalf("owners %v: this process's own socket is not another process", inUse.Owners)
			}
		})
	}
}

func TestProcAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:0035", "0.0.0.0:53"},
		{"00000000000000000000000001000000:1F90", "[::1]:8080"},
		{"0000000000000000FFFF00000100007F:0050", "[::ffff:127.0.0.1]:80"},
	} {
		got, ok := procAddr(tc.in)
		if !ok || got.String() != tc.want {
			t.Errorf("procAddr(%q) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01:0050", "zz00007F:0050"} {
		if _, ok := procAddr(bad); ok {
			t.Errorf("procAddr(%q) accepted", bad)
		}
	}
}

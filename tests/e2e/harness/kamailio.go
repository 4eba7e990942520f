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
	// Registrar is where strait's REGISTERs go (host:port); default PBX.
	Registrar string
	// RecordRoute makes the proxy record-route dialogs.
	RecordRoute bool
	// TLS, when set, adds a TLS listener on strait's side (StraitTLSAddr)
	// and sends strait's requests over TLS to StraitTLS.
	TLS *KamailioTLS
}

// KamailioTLS is the TLS side of a Kamailio proxy: its certificate and
// key, the CA it checks peers' certificates against (strait's server
// certificate, and its client certificate when RequireClientCert), and
// strait's SIP TLS address.
type KamailioTLS struct {
	Cert, Key, CA     string
	RequireClientCert bool
	StraitTLS         string
}

// Kamailio is a running Kamailio proxy.
type Kamailio struct {
	*Process
	// StraitSide is the port strait's --upstream names; PBXSide the port
	// the PBX sends to. Both listen on UDP and TCP on 127.0.0.1.
	// StraitTLSSide listens for TLS from strait when asked, else 0.
	StraitSide, PBXSide, StraitTLSSide int
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
	if cfg.TLS != nil {
		k.StraitTLSSide = FreePort(e.t)
	}
	registrar := cfg.Registrar
	if registrar == "" {
		registrar = cfg.PBX
	}
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
		"-A", "STRAIT_TLS_SIDE=" + strconv.Itoa(k.StraitTLSSide),
		"-A", fmt.Sprintf("PBX_SOCKET=\"%s:%s\"", pbxProto, k.PBXAddr()),
		"-A", fmt.Sprintf("PBX_URI=\"%s\"", pbxURI),
		"-A", fmt.Sprintf("REGISTRAR_URI=\"sip:%s\"", registrar),
	}
	if cfg.TLS == nil {
		argv = append(argv, "-A", fmt.Sprintf("STRAIT_SOCKET=\"udp:%s\"", k.StraitAddr()),
			"-A", fmt.Sprintf("STRAIT_URI=\"sip:%s\"", cfg.Strait))
	} else {
		tlsCfg := filepath.Join(dir, "tls.cfg")
		verify := "0"
		if cfg.TLS.RequireClientCert {
			verify = "1"
		}
		conf := fmt.Sprintf("[server:default]\nmethod = TLSv1.2+\ncertificate = %s\nprivate_key = %s\nca_list = %s\n"+
			"verify_certificate = %s\nrequire_certificate = %s\n\n"+
			"[client:default]\nmethod = TLSv1.2+\ncertificate = %s\nprivate_key = %s\nca_list = %s\n"+
			"verify_certificate = 1\nrequire_certificate = 1\n",
			cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA, verify, verify, cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
		if err := os.WriteFile(tlsCfg, []byte(conf), 0o644); err != nil {
			e.t.Fatal(err)
		}
		argv = append(argv, "-A", "WITH_TLS", "-A", fmt.Sprintf("TLS_CFG=\"%s\"", tlsCfg),
			"-A", fmt.Sprintf("STRAIT_SOCKET=\"tls:%s\"", hostPort(k.StraitTLSSide)),
			"-A", fmt.Sprintf("STRAIT_URI=\"sip:%s;transport=tls\"", cfg.TLS.StraitTLS),
			"-l", "tls:"+hostPort(k.StraitTLSSide))
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

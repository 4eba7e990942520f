package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// presenceTables are the db_text tables Kamailio's presence modules use
// (with version, which says their schema versions), copied from Debian's
// templates into each run's directory.
var presenceTables = []string{"version", "presentity", "active_watchers", "watchers", "xcap", "pua"}

// dbtextTemplates is where Debian's kamailio package keeps them.
const dbtextTemplates = "/usr/share/kamailio/dbtext/kamailio"

// PresenceServer is a running Kamailio presence server
// (tests/e2e/kamailio/presence.cfg): PUBLISH and SUBSCRIBE for the
// presence event package, on UDP and TCP.
type PresenceServer struct {
	*Process
	// Port is its SIP port on 127.0.0.1.
	Port int
}

// Addr is its SIP address.
func (p *PresenceServer) Addr() string { return hostPort(p.Port) }

// kamailioPresence reports whether Kamailio's presence modules and the
// db_text templates are installed.
func kamailioPresence() bool {
	mods, _ := filepath.Glob("/usr/lib/*/kamailio/modules/presence_xml.so")
	_, err := os.Stat(filepath.Join(dbtextTemplates, "presentity"))
	return len(mods) > 0 && err == nil
}

// StartPresenceServer starts Kamailio as a presence server (stopped at the
// end of the test) and waits until it accepts TCP connections.
func (e *Env) StartPresenceServer(name string) *PresenceServer {
	e.t.Helper()
	dir := e.Artifact(name)
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		e.t.Fatal(err)
	}
	for _, t := range presenceTables {
		b, err := os.ReadFile(filepath.Join(dbtextTemplates, t))
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(db, t), b, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	ps := &PresenceServer{Port: FreePort(e.t)}
	argv := []string{"kamailio", "-f", filepath.Join(E2EDir(), "kamailio", "presence.cfg"),
		"-DD", "-E", "-n", "2", "-m", "32", "-M", "4", "-w", dir, "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"),
		"-A", fmt.Sprintf("DBURL=\"text://%s\"", db),
		"-A", fmt.Sprintf("SERVER_ADDRESS=\"sip:%s\"", ps.Addr()),
		"-l", "udp:" + ps.Addr(), "-l", "tcp:" + ps.Addr()}
	p, err := e.startProcess(name, dir, nil, 3*time.Second, argv...)
	if err != nil {
		e.t.Fatal(err)
	}
	ps.Process = p
	e.Step(name+" listening", 10*time.Second, func(ctx context.Context) error {
		for {
			if p.Exited() {
				return fmt.Errorf("kamailio exited: %v\n%s", p.err, lastLines(p.Log(), 30))
			}
			c, err := net.DialTimeout("tcp", ps.Addr(), time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("kamailio not listening on %s: %w", ps.Addr(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return ps
}

package server

import (
	"os"
	"testing"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// TestMain installs sipgo's process-wide SIP tracer before any server
// runs, as cmd/strait does: the HEP test then captures without racing
// the transports of other tests' servers.
func TestMain(m *testing.M) {
	sipnet.InstallTracer()
	os.Exit(m.Run())
}

package attack

import (
	"testing"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// TestMain builds strait once and re-executes the tests in a network
// namespace of their own (see tests/e2e/harness).
func TestMain(m *testing.M) { harness.Main(m) }

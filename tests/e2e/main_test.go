package e2e

import (
	"testing"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

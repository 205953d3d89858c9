package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test or benchmark leaks a goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

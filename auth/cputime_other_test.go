//go:build !unix

package auth

import (
	"testing"
	"time"
)

// cpuTime is not measured here; benchmarks then report no cpu-ns/op.
func cpuTime(*testing.B) time.Duration { return 0 }

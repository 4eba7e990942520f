//go:build !race

// Package racecheck tells tests whether the race detector is on, so that
// allocation counts (which the detector's instrumentation inflates) are only
// pinned in normal builds.
package racecheck

// Enabled reports whether the binary was built with the race detector.
const Enabled = false

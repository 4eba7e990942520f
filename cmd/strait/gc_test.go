package main

import (
	"runtime/debug"
	"testing"
)

// GOGC unset: strait's own target; set: the environment's, untouched.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	if got := tuneGC(noEnv); got != defaultGCPercent {
		t.Fatalf("GOGC unset: %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC unset: the runtime's target is %d, want %d", got, defaultGCPercent)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	}
	if got := tuneGC(env); got != 100 {
		t.Fatalf("GOGC=100: %d, want 100 (the environment's)", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC=100: the runtime's target is %d, want 100", got)
	}
}

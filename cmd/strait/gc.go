package main

import "runtime/debug"

// defaultGCPercent is the garbage collector's target (GOGC) when the
// environment sets none: the heap may grow to three times what is live
// before a cycle, not twice.
//
// At 1 000 calls/s on two CPUs a mark phase takes the collector's workers
// over a whole CPU (the hot-waiting packet workers raise GOMAXPROCS to 4, and
// a quarter of that is one dedicated mark worker, with idle ones on top), and
// calls set up inside a phase wait for the scheduler several times longer
// than outside it (bench/README.md, "sipgo's waiting transactions and the
// GC"). A phase lasts as long as the live heap takes to mark, whatever GOGC
// is; GOGC sets how often one comes. Since third_party/sipgo stopped keeping
// finished transactions' messages, the live heap is what the calls in
// progress hold (70-100 MB at 1 000 calls/s), so 200 halves the cycles and
// the time spent marking for a peak heap (about 250 MB there) below what
// the default's was before (300 MB). GOGC and GOMEMLIMIT in the environment
// win, as for any Go program.
const defaultGCPercent = 200

// tuneGC sets the collector's target to defaultGCPercent unless GOGC is
// set in the environment (getenv). It returns the target in effect.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1) // read it back: SetGCPercent is the only getter
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}

package batchconn

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// hotLoops counts the bound Loops of this process that hot-wait
// (LoopConfig.HotWait): each can keep a P to itself for that long.
var hotLoops atomic.Int32

// procsMu serialises reserveProc's read-modify-write of GOMAXPROCS.
var procsMu sync.Mutex

// startProcs is GOMAXPROCS as the process started: the CPUs it may use.
var startProcs = runtime.GOMAXPROCS(0)

// StartProcs is GOMAXPROCS as the process started, before hot-waiting
// Loops raised it: what to size per-CPU work by (one packet worker per
// CPU), so that a later engine in the process does not grow with the Ps
// the earlier one's Loops added.
func StartProcs() int { return startProcs }

// reserveProc counts one more hot-waiting Loop and raises GOMAXPROCS, if
// needed, to startProcs plus the hot-waiting Loops: each keeps its own P
// while it waits, and every other goroutine of the process (the control
// plane's in an all-in-one, the node's gRPC and timers, a harness's
// generator) keeps as many Ps as it had, so that waiting Loops never
// leave a CPU unused by the rest. A P is not a CPU: a Loop waiting hot
// sleeps in the kernel and uses no CPU while it keeps its P. GOMAXPROCS is
// never lowered again (a P nobody uses costs nothing).
func reserveProc() {
	n := int(hotLoops.Add(1))
	procsMu.Lock()
	defer procsMu.Unlock()
	if want := startProcs + n; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}

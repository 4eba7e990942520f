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

// reserveProc counts one more hot-waiting Loop and raises GOMAXPROCS, if
// needed, so that one P stays for every other goroutine of the process
// (the control plane's in an all-in-one, the node's gRPC and timers) while
// every hot-waiting Loop keeps its own. A P is not a CPU: a Loop waiting
// hot sleeps in the kernel and uses no CPU while it keeps its P.
// GOMAXPROCS is never lowered again (a P nobody uses costs nothing).
func reserveProc() {
	n := int(hotLoops.Add(1))
	procsMu.Lock()
	defer procsMu.Unlock()
	if runtime.GOMAXPROCS(0) <= n {
		runtime.GOMAXPROCS(n + 1)
	}
}

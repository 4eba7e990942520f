package procstat

import (
	"fmt"
	"os/exec"
)

// StartPerfSyscalls is StartSyscalls with perf only: for a count over a
// long, loaded run, where strace (which stops the process at every
// call) would change what is measured. It fails where perf cannot count.
func StartPerfSyscalls(pid int) (*SyscallCounter, error) {
	p, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("procstat: perf: %w", err)
	}
	return startPerf(p, pid)
}

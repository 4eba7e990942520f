package callrate

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// machineCPU is the whole machine's CPU time from /proc/stat's first line,
// in clock ticks: busy (user, nice, system, irq, softirq, steal) and all
// (busy plus idle and iowait).
type machineCPU struct{ busy, all uint64 }

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(string(b))
}

// parseMachineCPU parses "cpu  user nice system idle iowait irq softirq
// steal ..." (proc(5)); guest time is already counted in user.
func parseMachineCPU(stat string) (machineCPU, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, errors.New("/proc/stat: no cpu line")
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[1+i], 10, 64)
		if err != nil {
			return machineCPU{}, err
		}
		v[i] = n
	}
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return machineCPU{busy: busy, all: busy + v[3] + v[4]}, nil
}

// share is the fraction of the machine's CPU time busy between m and a
// later reading.
func (m machineCPU) share(later machineCPU) float64 {
	if later.all <= m.all {
		return 0
	}
	return float64(later.busy-m.busy) / float64(later.all-m.all)
}

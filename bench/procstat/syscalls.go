package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Syscalls is what a SyscallCounter counted.
type Syscalls struct {
	// Total is every system call of every thread of the process.
	Total uint64
	// ByCall counts the calls a packet relay makes for its I/O and
	// wake-ups, by name (only those the method can tell apart).
	ByCall map[string]uint64
	// Method says how they were counted.
	Method string
}

// Methods of counting.
const (
	MethodPerf   = "perf stat: raw_syscalls:sys_enter tracepoint, every thread of the process"
	MethodStrace = "strace -c -f: every thread of the process (ptrace slows it: a calibration only)"
)

// relayCalls are the system calls itemised in ByCall: datagram I/O,
// readiness waits and wake-ups (eventfd, futex), and sleeps.
var relayCalls = []string{
	"recvmmsg", "sendmmsg", "recvmsg", "sendmsg", "recvfrom", "sendto", "read", "write",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "io_uring_enter", "futex", "nanosleep", "clock_nanosleep",
}

// SyscallCounter counts a process's system calls from Start to Stop.
type SyscallCounter struct {
	cmd      *exec.Cmd
	out      bytes.Buffer
	method   string
	waitDone chan error
	// perf's control and acknowledgement pipes (--control fd:3,4).
	ctl *os.File
	ack *bufio.Reader
}

// StartSyscalls starts counting the system calls of every thread of pid:
// with perf's in-kernel tracepoint counters when perf can (no slowdown
// worth speaking of), else with strace -c (which stops the process at every
// call: use it over a short calibration window only). It returns once the
// count runs, or an error when neither works here.
func StartSyscalls(pid int) (*SyscallCounter, error) {
	var errs []error
	if p, err := exec.LookPath("perf"); err == nil {
		c, err := startPerf(p, pid)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	} else {
		errs = append(errs, err)
	}
	if p, err := exec.LookPath("strace"); err == nil {
		c, err := startStrace(p, pid)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	} else {
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("procstat: cannot count system calls here: %w", errors.Join(errs...))
}

// startPerf runs perf stat with its events disabled (-D -1) and enables
// them through its control pipe once it is ready, so that the count covers
// exactly the time between StartSyscalls and Stop.
func startPerf(bin string, pid int) (*SyscallCounter, error) {
	args := []string{"stat", "-x", ",", "-D", "-1", "--control", "fd:3,4", "-e", "raw_syscalls:sys_enter"}
	for _, c := range relayCalls {
		args = append(args, "-e", "syscalls:sys_enter_"+c)
	}
	args = append(args, "-p", strconv.Itoa(pid))
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	c := &SyscallCounter{method: MethodPerf, ctl: ctlW, ack: bufio.NewReader(ackR)}
	c.cmd = exec.Command(bin, args...)
	c.cmd.ExtraFiles = []*os.File{ctlR, ackW}
	if err := c.run(); err != nil {
		ctlR.Close()
		ackW.Close()
		ctlW.Close()
		ackR.Close()
		return nil, err
	}
	ctlR.Close()
	ackW.Close()
	if err := c.control("enable"); err != nil {
		c.kill()
		return nil, fmt.Errorf("perf: %w: %s", err, strings.TrimSpace(c.out.String()))
	}
	return c, nil
}

func startStrace(bin string, pid int) (*SyscallCounter, error) {
	c := &SyscallCounter{method: MethodStrace}
	c.cmd = exec.Command(bin, "-c", "-f", "-q", "-p", strconv.Itoa(pid))
	if err := c.run(); err != nil {
		return nil, err
	}
	// strace attaches to every thread before it resumes them; give it the
	// moment that takes, and make sure it did not fail.
	select {
	case err := <-c.waitDone:
		return nil, fmt.Errorf("strace exited at start: %v: %s", err, strings.TrimSpace(c.out.String()))
	case <-time.After(200 * time.Millisecond):
	}
	return c, nil
}

func (c *SyscallCounter) run() error {
	c.cmd.Stderr = &c.out
	c.cmd.Stdout = &c.out
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.waitDone = make(chan error, 1)
	go func() { c.waitDone <- c.cmd.Wait() }()
	return nil
}

// control sends perf a command and waits for its acknowledgement.
func (c *SyscallCounter) control(cmd string) error {
	if _, err := c.ctl.WriteString(cmd + "\n"); err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() {
		line, err := c.ack.ReadString('\n')
		// perf writes "ack\n" with its C string's NUL after it.
		if err == nil && strings.Trim(line, "\x00 \n") != "ack" {
			err = fmt.Errorf("unexpected answer %q", line)
		}
		got <- err
	}()
	select {
	case err := <-got:
		return err
	case err := <-c.waitDone:
		c.waitDone <- err
		return fmt.Errorf("exited: %v", err)
	case <-time.After(10 * time.Second):
		return errors.New("no acknowledgement in 10 s")
	}
}

func (c *SyscallCounter) kill() {
	c.cmd.Process.Kill()
	<-c.waitDone
	if c.ctl != nil {
		c.ctl.Close()
	}
}

// Stop ends the count and returns it.
func (c *SyscallCounter) Stop() (Syscalls, error) {
	if c.method == MethodPerf {
		if err := c.control("disable"); err != nil {
			c.kill()
			return Syscalls{}, fmt.Errorf("perf: %w", err)
		}
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.waitDone:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.waitDone
	}
	if c.ctl != nil {
		c.ctl.Close()
	}
	if c.method == MethodPerf {
		return parsePerf(c.out.Bytes())
	}
	return parseStrace(c.out.Bytes())
}

// parsePerf reads perf stat -x, output: "count,unit,event,...", with
// "<not counted>" for an event that never fired.
func parsePerf(out []byte) (Syscalls, error) {
	s := Syscalls{ByCall: map[string]uint64{}, Method: MethodPerf}
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) < 3 {
			continue
		}
		var n uint64
		if f[0] != "<not counted>" && f[0] != "<not supported>" {
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				continue
			}
			n = v
		}
		switch ev := f[2]; {
		case ev == "raw_syscalls:sys_enter":
			s.Total, found = n, true
		case strings.HasPrefix(ev, "syscalls:sys_enter_"):
			if n > 0 {
				s.ByCall[strings.TrimPrefix(ev, "syscalls:sys_enter_")] = n
			}
		}
	}
	if !found {
		return s, fmt.Errorf("procstat: no count in perf output %q", out)
	}
	return s, nil
}

// parseStrace reads strace -c's table: one row per call, the number of
// calls in the fourth column and the name in the last.
func parseStrace(out []byte) (Syscalls, error) {
	s := Syscalls{ByCall: map[string]uint64{}, Method: MethodStrace}
	rows := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		if _, err := strconv.ParseFloat(f[0], 64); err != nil {
			continue
		}
		n, err := strconv.ParseUint(f[3], 10, 64)
		if err != nil {
			continue
		}
		s.Total += n
		for _, c := range relayCalls {
			if c == f[len(f)-1] {
				s.ByCall[c] = n
			}
		}
		rows++
	}
	if rows == 0 {
		return s, fmt.Errorf("procstat: no rows in strace output %q", out)
	}
	return s, nil
}

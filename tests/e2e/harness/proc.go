package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is a program the harness started, with its output going to a
// file in the test's artifacts.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string

	done chan struct{} // closed when the process exited; err is set then
	err  error
}

// startProcess starts argv in dir, output to <artifacts>/<name>.log, and
// registers a cleanup that stops it (SIGTERM, then SIGKILL after grace).
// The process gets its own process group so that Stop reaches its
// children too (Chromium's renderers).
func (e *Env) startProcess(name, dir string, env []string, grace time.Duration, argv ...string) (*Process, error) {
	logPath := e.Artifact(name + ".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	fmt.Fprintf(f, "# %s\n", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() { p.Stop(grace) })
	return p, nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit by itself and returns its error
// (nil for exit status 0), or ctx's error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after grace. It is a
// no-op once the process has exited.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	pgid := -p.Cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill ends the process group with SIGKILL at once (a crash, as kill -9
// makes one) and waits for it to exit.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the process (not its group) and waits for it to
// exit by itself, returning its error (nil for exit status 0) or ctx's.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return err
	}
	return p.Wait(ctx)
}

// ExitCode returns the exit status of an exited process, or -1.
func (p *Process) ExitCode() int {
	var exit *exec.ExitError
	switch {
	case !p.Exited():
		return -1
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	}
	return -1
}

// Log returns the process's output so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

//go:build !linux

package harness

import (
	"errors"
	"syscall"
)

func runInNetns() (int, error) { return 0, errors.New("network namespaces need Linux") }

func loopbackUp() error { return errors.New("network namespaces need Linux") }

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

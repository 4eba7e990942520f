package batchconn

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// probeTimeout bounds the probe's wait for its own wake-up and datagram.
const probeTimeout = 2 * time.Second

var (
	probeOnce sync.Once
	probeErr  error
)

// uringWorks reports whether io_uring works here the way the Loop uses it,
// tried once per process: a ring set up, enabled on its thread, a wake-up
// read from the eventfd, and, where a loopback socket can be had, a
// datagram sent to itself through a SENDMSG submission and received by a
// multishot recvmsg into a provided buffer. A kernel may refuse io_uring
// outright (io_uring_disabled, a container's seccomp profile: EPERM,
// ENOSYS) or, in sandboxes that emulate it, accept the setup and fail
// later; either way the error wraps errNoUring and the caller uses mmsg.
func uringWorks() error {
	probeOnce.Do(func() {
		done := make(chan error, 1)
		// Its own goroutine: Bind locks it to its thread, which ends with it.
		go func() { done <- probeUring() }()
		select {
		case probeErr = <-done:
		case <-time.After(2 * probeTimeout):
			probeErr = errors.New("no answer") // the goroutine stays blocked in the kernel
		}
		if probeErr != nil && !errors.Is(probeErr, errNoUring) {
			probeErr = fmt.Errorf("%w: probe: %v", errNoUring, probeErr)
		}
	})
	return probeErr
}

func probeUring() error {
	l, err := makeUringLoop(LoopConfig[int]{BatchSize: 4, BufSize: 2048, Buffers: 16})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Bind(); err != nil {
		return fmt.Errorf("enable: %v", err)
	}
	// Something must end every Next that could otherwise wait forever,
	// and be done with the loop before Close.
	quit, timer := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(timer)
		select {
		case <-quit:
		case <-time.After(probeTimeout):
			l.Stop()
		}
	}()
	defer func() { close(quit); <-timer }()
	l.Wake()
	if _, err := l.Next(); err != nil {
		return fmt.Errorf("wake-up: %v", err)
	}
	s, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), Options{})
	if err != nil {
		return nil // no loopback here (a fresh netns): the ring itself works
	}
	defer s.Close()
	if err := l.Add(s, 1); err != nil {
		return fmt.Errorf("recvmsg: %v", err)
	}
	defer l.Remove(s)
	var sendErr error
	l.dropped = func(_ int, err error) { sendErr = err }
	payload := []byte("strait io_uring probe")
	if !l.Send(s, payload, s.Local, 0) {
		return errors.New("send queue")
	}
	for {
		msgs, err := l.Next()
		if err != nil {
			return fmt.Errorf("receive: %v", err)
		}
		if sendErr != nil {
			return nil // loopback refused the datagram, not io_uring
		}
		for _, m := range msgs {
			if m.Token == 1 && m.N == len(payload) && bytes.Equal(m.Buf[:m.N], payload) && m.Addr.Port() == s.Local.Port() {
				return nil
			}
		}
	}
}

// UringUnavailable reports why this process does not use io_uring (nil
// when it does work), for logs: ModeAuto falls back to mmsg silently.
func UringUnavailable() error { return uringWorks() }

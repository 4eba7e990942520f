// Package rtpengine drives Sipwise rtpengine, the incumbent media relay the
// bench harness measures Strait against: it starts the daemon (Debian's
// rtpengine-daemon) in the foreground, userspace forwarding only (no kernel
// module: --table=-1), and talks to it over its ng control protocol
// (bencoded dictionaries over UDP, each message prefixed by a cookie).
package rtpengine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled means no rtpengine binary was found: the baseline is
// skipped, not passed.
var ErrNotInstalled = errors.New("rtpengine: not installed (Debian: apt-get install rtpengine-daemon)")

// Binary finds the rtpengine executable (path if given, else $PATH and
// /usr/bin and /usr/sbin).
func Binary(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if p, err := exec.LookPath("rtpengine"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/rtpengine", "/usr/sbin/rtpengine"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// Options configure a daemon.
type Options struct {
	// Binary is the rtpengine executable.
	Binary string
	// Interface is the media address (rtpengine's --interface).
	Interface netip.Addr
	// PortMin and PortMax bound its media ports.
	PortMin, PortMax int
	// Threads is --num-threads (0: one per CPU, rtpengine's default).
	Threads int
	// CPUs, if set, pins the daemon to these CPUs (a taskset list).
	CPUs string
	// Log receives the daemon's stderr (nil discards it).
	Log io.Writer
}

// Daemon is a running rtpengine and an ng client for it. Its methods are
// safe for concurrent use.
type Daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	ng   netip.AddrPort
	conn *net.UDPConn

	mu      sync.Mutex
	pending map[string]chan Dict

	strikes strikeLog // its stderr, watched for abandoned sockets
}

// Start runs rtpengine in the foreground and waits until it answers ping.
func Start(ctx context.Context, opt Options) (*Daemon, error) {
	ngPort, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	ng := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ngPort))
	args := []string{
		// Not Debian's /etc/rtpengine/rtpengine.conf: its fixed control
		// ports (CLI 2224, HTTP 2225) stop a second rtpengine on the
		// machine (another run, a test) from starting, and its settings
		// (TOS, timeouts, recording) are not the run's.
		"--config-file=none",
		"--foreground", "--log-stderr", "--log-level=4",
		"--table=-1", // userspace forwarding only
		"--interface=" + opt.Interface.String(),
		"--listen-ng=" + ng.String(),
		"--port-min=" + strconv.Itoa(opt.PortMin), "--port-max=" + strconv.Itoa(opt.PortMax),
		"--timeout=3600", "--silent-timeout=3600", "--final-timeout=0",
		"--delete-delay=0",
	}
	if opt.Threads > 0 {
		args = append(args, "--num-threads="+strconv.Itoa(opt.Threads))
	}
	cmd := exec.Command(opt.Binary, args...)
	if opt.CPUs != "" {
		cmd = exec.Command("taskset", append([]string{"-c", opt.CPUs, opt.Binary}, args...)...) // execs: same pid
	}
	d := &Daemon{cmd: cmd, done: make(chan struct{}), ng: ng, pending: make(map[string]chan Dict)}
	cmd.Stdout, cmd.Stderr = opt.Log, &d.strikes
	if opt.Log != nil {
		cmd.Stderr = io.MultiWriter(opt.Log, &d.strikes)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rtpengine: %w", err)
	}
	go func() { cmd.Wait(); close(d.done) }()
	if d.conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		d.Close()
		return nil, err
	}
	go d.read()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := d.Call(pctx, Dict{"command": "ping"})
		cancel()
		if err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("rtpengine exited at start: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.Close()
			return nil, fmt.Errorf("rtpengine did not answer ping: %w", err)
		}
	}
}

func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// PID is the daemon's process id (its CPU time is read from /proc).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Close stops the daemon.
func (d *Daemon) Close() error {
	if d.conn != nil {
		d.conn.Close()
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	return nil
}

func (d *Daemon) read() {
	buf := make([]byte, 65536)
	for {
		n, err := d.conn.Read(buf)
		if err != nil {
			return
		}
		cookie, body, ok := bytes.Cut(buf[:n], []byte(" "))
		if !ok {
			continue
		}
		v, _, err := decode(body)
		dict, _ := v.(Dict)
		if err != nil || dict == nil {
			continue
		}
		d.mu.Lock()
		ch := d.pending[string(cookie)]
		delete(d.pending, string(cookie))
		d.mu.Unlock()
		if ch != nil {
			ch <- dict
		}
	}
}

// Call sends one ng command and returns the reply. A reply whose result is
// "error" becomes an error with rtpengine's reason.
func (d *Daemon) Call(ctx context.Context, msg Dict) (Dict, error) {
	var c [8]byte
	rand.Read(c[:])
	cookie := hex.EncodeToString(c[:])
	b, err := encode([]byte(cookie+" "), msg)
	if err != nil {
		return nil, err
	}
	ch := make(chan Dict, 1)
	d.mu.Lock()
	d.pending[cookie] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, cookie)
		d.mu.Unlock()
	}()
	// UDP: retransmit as the SIP proxies' rtpengine modules do.
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := d.conn.WriteToUDPAddrPort(b, d.ng); err != nil {
			return nil, err
		}
		select {
		case r := <-ch:
			if res, _ := r["result"].(string); res != "ok" && res != "pong" {
				reason, _ := r["error-reason"].(string)
				return r, fmt.Errorf("rtpengine %v: %s %s", msg["command"], res, reason)
			}
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-d.done:
			return nil, errors.New("rtpengine exited")
		case <-t.C:
		}
	}
}

// Offer sends an offer and returns the SDP to pass on.
func (d *Daemon) Offer(ctx context.Context, callID, fromTag, sdp string, opts Dict) (string, error) {
	msg := Dict{"command": "offer", "call-id": callID, "from-tag": fromTag, "sdp": sdp}
	for k, v := range opts {
		msg[k] = v
	}
	r, err := d.Call(ctx, msg)
	if err != nil {
		return "", err
	}
	s, _ := r["sdp"].(string)
	return s, nil
}

// Answer sends an answer and returns the SDP to pass on.
func (d *Daemon) Answer(ctx context.Context, callID, fromTag, toTag, sdp string, opts Dict) (string, error) {
	msg := Dict{"command": "answer", "call-id": callID, "from-tag": fromTag, "to-tag": toTag, "sdp": sdp}
	for k, v := range opts {
		msg[k] = v
	}
	r, err := d.Call(ctx, msg)
	if err != nil {
		return "", err
	}
	s, _ := r["sdp"].(string)
	return s, nil
}

// Delete ends a call.
func (d *Daemon) Delete(ctx context.Context, callID string) error {
	_, err := d.Call(ctx, Dict{"command": "delete", "call-id": callID})
	return err
}

package rtpengine

import (
	"bytes"
	"regexp"
	"sync"
)

// strikeLog watches rtpengine's log for its receive loop giving up on
// sockets. rtpengine (daemon/media_socket.c, stream_fd_readable) reads at
// most 50 datagrams from a socket per wake-up; finding more queued counts
// a strike against the socket ("Too many packets in UDP receive queue"),
// and a socket with 5 strikes is never read again ("UDP receive queue
// exceeded 5 times: discarding packet"): its flow stops for good. Under
// CPU starvation that happens to every socket at once, which is how an
// overloaded rtpengine loses nearly everything. Both limits are compiled
// in (no option in 10.5). The log lines are rate-limited by rtpengine, so
// the counts are lower bounds.
type strikeLog struct {
	mu      sync.Mutex
	partial []byte
	struck  map[string]bool // "port N" with a strike since the last Strikes
	dead    map[string]bool // "port N" abandoned since the last Strikes
}

var (
	strikeRE = regexp.MustCompile(`port (\d+)\]: .*Too many packets in UDP receive queue`)
	deadRE   = regexp.MustCompile(`port (\d+)\]: .*UDP receive queue exceeded`)
)

func (s *strikeLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(s.partial[:i])
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 { // a line that never ends: not a log line
		s.partial = s.partial[:0]
	}
	return len(p), nil
}

func (s *strikeLog) line(l []byte) {
	if m := deadRE.FindSubmatch(l); m != nil {
		if s.dead == nil {
			s.dead = map[string]bool{}
		}
		s.dead[string(m[1])] = true
	} else if m := strikeRE.FindSubmatch(l); m != nil {
		if s.struck == nil {
			s.struck = map[string]bool{}
		}
		s.struck[string(m[1])] = true
	}
}

// take returns and resets the counts.
func (s *strikeLog) take() (struck, dead int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	struck, dead = len(s.struck), len(s.dead)
	s.struck, s.dead = nil, nil
	return struck, dead
}

// Strikes returns how many of the daemon's sockets, since the last call,
// had at least one strike (more than 50 datagrams queued when it came to
// read them) and how many it abandoned (5 strikes: never read again), as
// far as its rate-limited log tells.
func (d *Daemon) Strikes() (struck, abandoned int) { return d.strikes.take() }

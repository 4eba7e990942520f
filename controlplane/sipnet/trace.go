package sipnet

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/hep"
)

// sipgo reports every SIP message it sends or receives, on every
// transport, to one process-wide tracer once sip.SIPDebug is set. Strait
// installs its tracer once and routes what it sees to the debug log
// (EnableTrace) and to a capture sink (EnableCapture, package hep); both
// can change while the stack runs.
var trace struct {
	install sync.Once
	log     atomic.Pointer[slog.Logger]
	capture atomic.Pointer[captureSink]
	streams streamFramer // TCP and TLS reads, split into messages
}

// Capturer takes captured SIP messages; it must not block.
type Capturer interface{ Capture(hep.Message) }

type captureSink struct{ c Capturer }

// InstallTracer sets sipgo's process-wide tracer: once, before any
// stack runs (sipgo reads its switch unguarded), so that EnableTrace and
// EnableCapture later only change where messages go. Idempotent.
func InstallTracer() { installTracer() }

func installTracer() {
	trace.install.Do(func() {
		sip.SIPDebugTracer(tracer{})
		sip.SIPDebug = true
	})
}

// EnableTrace logs every SIP message sent and received, at debug level,
// through log. Call it from main (the tracer is process-wide).
func EnableTrace(log *slog.Logger) {
	trace.log.Store(log)
	installTracer()
}

// EnableCapture hands every SIP message Strait sends or receives, on
// every transport, to c (nil stops). The tracer is process-wide: a
// process running several stacks (tests) captures them all.
func EnableCapture(c Capturer) {
	if c == nil {
		trace.capture.Store(nil)
		return
	}
	trace.capture.Store(&captureSink{c})
	installTracer()
}

type tracer struct{}

// SIPTraceActive tells third_party/sipgo's transports whether to format
// and hand over the messages they read and write (sip.SIPTraceActiver):
// only while a log or a capture wants them, so that the tracer installed
// for good costs nothing per datagram otherwise.
func (tracer) SIPTraceActive() bool {
	return trace.log.Load() != nil || trace.capture.Load() != nil
}

func (tracer) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	if l := trace.log.Load(); l != nil {
		l.Debug("sip in", "transport", transport, "local", laddr, "remote", raddr, "msg", string(msg))
	}
	if s := trace.capture.Load(); s != nil {
		if transport == TCP { // a stream: reads are not messages
			trace.streams.feed(raddr+"|"+laddr, msg, func(m []byte) { capture(s, transport, raddr, laddr, m) })
			return
		}
		capture(s, transport, raddr, laddr, msg)
	}
}

func (tracer) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	if l := trace.log.Load(); l != nil {
		l.Debug("sip out", "transport", transport, "local", laddr, "remote", raddr, "msg", string(msg))
	}
	if s := trace.capture.Load(); s != nil {
		capture(s, transport, laddr, raddr, msg) // sipgo writes a whole message at once
	}
}

func capture(s *captureSink, transport, src, dst string, msg []byte) {
	if len(bytes.TrimSpace(msg)) == 0 {
		return // a keepalive (CRLF)
	}
	from, _ := netip.ParseAddrPort(src)
	to, _ := netip.ParseAddrPort(dst)
	s.c.Capture(hep.Message{Src: from, Dst: to, TCP: transport != UDP, Time: time.Now(), Payload: msg, CallID: callID(msg)})
}

// callID finds the Call-ID header (or its compact form, i) of a message.
func callID(msg []byte) string {
	for line := range bytes.Lines(msg) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break // end of the headers
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")) {
			return string(bytes.TrimSpace(value))
		}
	}
	return ""
}

// streamFramer splits the bytes read from stream connections into SIP
// messages (RFC 3261 section 18.3: Content-Length frames the body).
// Bounded: at most maxStreams connections with at most maxPending bytes
// each; beyond that a stream's bytes are dropped until a new message
// starts.
type streamFramer struct {
	mu      sync.Mutex
	pending map[string][]byte
}

const (
	maxStreams = 4096
	maxPending = 64 << 10
)

func (f *streamFramer) feed(key string, b []byte, emit func([]byte)) {
	f.mu.Lock()
	if f.pending == nil {
		f.pending = map[string][]byte{}
	}
	buf := append(f.pending[key], b...)
	var out [][]byte
	for {
		buf = bytes.TrimLeft(buf, "\r\n") // keepalives between messages
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			break
		}
		n := end + 4 + contentLength(buf[:end])
		if n > len(buf) {
			break
		}
		out = append(out, buf[:n:n])
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0:
		delete(f.pending, key)
	case len(buf) > maxPending || (len(f.pending) >= maxStreams && f.pending[key] == nil):
		delete(f.pending, key)
	default:
		f.pending[key] = append([]byte(nil), buf...)
	}
	f.mu.Unlock()
	for _, m := range out {
		emit(m)
	}
}

func contentLength(head []byte) int {
	for line := range bytes.Lines(head) {
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err == nil && n >= 0 && n <= maxPending {
				return n
			}
		}
	}
	return 0
}

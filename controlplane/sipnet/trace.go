package sipnet

import (
	"log/slog"

	"github.com/emiago/sipgo/sip"
)

// EnableTrace logs every SIP message sent and received, at debug level,
// through log. It sets sipgo's process-wide tracer, so call it once, from
// main, when the log level is debug.
func EnableTrace(log *slog.Logger) {
	sip.SIPDebugTracer(tracer{log})
	sip.SIPDebug = true
}

type tracer struct{ log *slog.Logger }

func (t tracer) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	t.log.Debug("sip in", "transport", transport, "local", laddr, "remote", raddr, "msg", string(msg))
}

func (t tracer) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	t.log.Debug("sip out", "transport", transport, "local", laddr, "remote", raddr, "msg", string(msg))
}

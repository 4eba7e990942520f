package sipnet

import (
	"errors"
	"io"
)

// Hooks for carrying a browser's WebSocket flow between control planes
// (package cluster): the process holding the WebSocket passes the raw
// messages of another process's dialogs on, untouched, in both
// directions, so that the other process's SIP stack talks to the browser
// end to end as over its own connection.

// Divert is called with each message read from a WebSocket flow (its
// remote address), after admission, before it is parsed; when it returns
// true the message is taken (passed on to a peer) and this stack never
// sees it. It runs on the flow's read goroutine: it must not block for
// long (the flow's next message waits).
type Divert func(flow string, data []byte) bool

// SetDivert installs d (nil removes it).
func (s *Stack) SetDivert(d Divert) {
	if d == nil {
		s.divert.Store(nil)
		return
	}
	s.divert.Store(&d)
}

// diverted applies the Divert, if any, to a WebSocket message.
func (s *Stack) diverted(flow string, data []byte) bool {
	d := s.divert.Load()
	return d != nil && (*d)(flow, data)
}

// errNoFlow: the WebSocket flow is not (or no longer) open here.
var errNoFlow = errors.New("sipnet: no such WebSocket flow")

// WriteFlow writes one whole SIP message, as is, on the WebSocket flow
// (one text frame, RFC 7118 section 5).
func (s *Stack) WriteFlow(flow string, data []byte) error {
	c, err := s.UA.TransportLayer().GetConnection(WS, flow)
	if err != nil || c == nil {
		return errNoFlow
	}
	defer c.TryClose()
	w, ok := c.(io.Writer)
	if !ok {
		return errNoFlow
	}
	_, err = w.Write(data)
	return err
}

// HasFlow reports whether sipgo holds the WebSocket flow (it does once
// the connection's handshake is done).
func (s *Stack) HasFlow(flow string) bool {
	c, err := s.UA.TransportLayer().GetConnection(WS, flow)
	if err != nil || c == nil {
		return false
	}
	c.TryClose() // GetConnection took a reference
	return true
}

package sipnet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// Which connections Strait opens.
//
// sipgo opens a connection whenever it has none for where a message goes.
// For the requests Strait sends (toward the PBX, a SIP phone, a browser)
// that is Strait's decision. For responses it is not: when a request's
// TCP or WebSocket connection has closed before its server transaction is
// created, sipgo resolves the top Via's sent-by and dials it (RFC 3261
// section 18.2.2 allows a server to try it), which gives anyone who can
// open a connection to Strait a connect-and-write primitive toward any
// host Strait can reach. At a public edge a response goes back on the
// connection its request came on (RFC 3261 section 18.2.2's first rule:
// "the response MUST be sent using the existing connection to the source
// of the original request") or nowhere.
//
// sipgo offers no per-message hook for that, but it builds every
// connection through the DialerCreate of its transports, and passes the
// sender's context down to the dial. So Strait's transports dial only when
// the context carries allowDial, which the Stack adds to the requests it
// sends (Transaction, Write); server transactions get no such context and
// their dials are refused before any packet leaves, and counted. Strait
// never dials a WebSocket at all: browsers connect to it.

// dialTimeout bounds connecting to a peer over TCP or TLS: 64*T1, the
// transaction timeout (RFC 3261 Timer B and F), after which nobody waits
// for the connection anyway.
const dialTimeout = 64 * T1

// errDialRefused is why a dial Strait did not decide was refused.
var errDialRefused = errors.New("sipnet: refusing to open a connection for a response (it goes back on the request's connection or nowhere)")

// dialKey marks a context under which Strait itself sends a request.
type dialKey struct{}

// allowDial returns ctx marked so that the transports may open a
// connection for the request sent under it.
func allowDial(ctx context.Context) context.Context { return context.WithValue(ctx, dialKey{}, true) }

// dialAllowed reports whether ctx was marked by allowDial.
func dialAllowed(ctx context.Context) bool { v, _ := ctx.Value(dialKey{}).(bool); return v }

// transports returns sipgo transports for TCP, TLS, WS and WSS whose
// dialers follow the rule above; m counts refused dials.
func transports(m *metrics.Metrics) sip.TransportsConfig {
	streamDialer := func(transport string) func(laddr net.Addr) net.Dialer {
		return func(laddr net.Addr) net.Dialer {
			return net.Dialer{Timeout: dialTimeout, LocalAddr: laddr,
				// Called after the socket exists and before it connects:
				// refusing here sends nothing.
				ControlContext: func(ctx context.Context, _, _ string, _ syscall.RawConn) error {
					if dialAllowed(ctx) {
						return nil
					}
					m.SIPDropped(transport, metrics.DropDialRefused)
					return errDialRefused
				}}
		}
	}
	wsDialer := func(transport string) func(net.Addr) ws.Dialer {
		return func(net.Addr) ws.Dialer {
			return ws.Dialer{NetDial: func(context.Context, string, string) (net.Conn, error) {
				m.SIPDropped(transport, metrics.DropDialRefused)
				return nil, errDialRefused
			}}
		}
	}
	return sip.TransportsConfig{
		TCP: &sip.TransportTCP{DialerCreate: streamDialer(TCP)},
		TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: streamDialer(TLS)}},
		WS:  &sip.TransportWS{DialerCreate: wsDialer(WS)},
		WSS: &sip.TransportWSS{TransportWS: &sip.TransportWS{DialerCreate: wsDialer(WSS)}},
	}
}

// quietRefusals is a slog handler for sipgo's logs that demotes to debug
// the records an attacker can cause at will: a refused dial (sipgo logs
// each failed server transaction as an error), a message that does not
// parse, a connection reset, a read filter's refusal. An attacker must not
// be able to write a log line per message; what matters is counted
// instead (strait_sip_dropped_total).
type quietRefusals struct{ slog.Handler }

// attackerCaused are sipgo's messages for events a peer causes.
var attackerCaused = map[string]bool{
	"Read filter error": true, "failed to parse": true, "Read error": true, "Got TCP error": true,
	"TCP ref went negative": true, "WS ref went negative": true, "connection pool not clean cleanup": true,
	"Failed to pong keep alive": true,
}

// QuietLogger wraps h so that sipgo's records of attacker-caused events
// are at debug level. cmd/strait installs it as sipgo's default logger
// (sip.SetDefaultLogger), which its transports log through.
func QuietLogger(h slog.Handler) *slog.Logger { return slog.New(quietRefusals{h}) }

func (h quietRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug {
		refused := attackerCaused[r.Message]
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && errors.Is(err, errDialRefused) {
				refused = true
				return false
			}
			return true
		})
		if refused {
			if !h.Handler.Enabled(ctx, slog.LevelDebug) {
				return nil
			}
			demoted := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
			r.Attrs(func(a slog.Attr) bool { demoted.AddAttrs(a); return true })
			r = demoted
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return quietRefusals{h.Handler.WithAttrs(as)}
}

func (h quietRefusals) WithGroup(name string) slog.Handler {
	return quietRefusals{h.Handler.WithGroup(name)}
}

// Enabled lets warnings and errors through for Handle to inspect.
func (h quietRefusals) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l)
}

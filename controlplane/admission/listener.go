package admission

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Connection refusal reasons (a closed set, for metrics).
const (
	RefusedPerSource = "per_source" // the source holds PerSource connections already
	RefusedTotal     = "total"      // Strait holds Total connections (and the reserve is full)
)

// Limits bound open connections.
type Limits struct {
	// PerSource caps the connections one source (see Key) may hold open
	// across every listener of the Connections; 0: no cap.
	PerSource int
	// Total caps the connections open across every listener; 0: no cap.
	Total int
}

// Connections counts the connections open on a set of listeners (the
// HTTP listener, SIP over TCP and TLS: they share the process's file
// descriptors) and refuses those beyond its Limits. It is safe for
// concurrent use.
type Connections struct {
	limits Limits
	// OnRefuse, when set, is called for each refused connection with the
	// listener's name and the reason (RefusedPerSource, RefusedTotal).
	// OnChange, when set, is called with a listener's name and its count
	// of open connections after each change. Set both before Listen.
	OnRefuse func(listener, reason string)
	OnChange func(listener string, open int)

	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int
}

// NewConnections returns a counter enforcing limits.
func NewConnections(limits Limits) *Connections {
	return &Connections{limits: limits, bySource: map[netip.Prefix]int{}}
}

// Limits returns the limits in force.
func (c *Connections) Limits() Limits { return c.limits }

// Open returns the number of connections open now.
func (c *Connections) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// admit counts a new connection from key; reserve lets it exceed Total by
// up to that many. It returns "" or the refusal reason.
func (c *Connections) admit(key netip.Prefix, hasKey bool, reserve int) (reason string, reserved bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hasKey && c.limits.PerSource > 0 && c.bySource[key] >= c.limits.PerSource {
		return RefusedPerSource, false
	}
	if c.limits.Total > 0 && c.total >= c.limits.Total {
		if c.total >= c.limits.Total+reserve {
			return RefusedTotal, false
		}
		reserved = true
	}
	c.total++
	if hasKey {
		c.bySource[key]++
	}
	return "", reserved
}

func (c *Connections) release(key netip.Prefix, hasKey bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if hasKey {
		if n := c.bySource[key] - 1; n > 0 {
			c.bySource[key] = n
		} else {
			delete(c.bySource, key)
		}
	}
}

// Listen wraps l so that its connections count against c. Connections
// beyond the limits are closed as soon as they are accepted (a reset: the
// peer learns at once) and never reach the caller of Accept. reserve
// connections beyond Total are still accepted and marked (see Reserved):
// the HTTP listener keeps them for health checks.
func (c *Connections) Listen(l net.Listener, name string, reserve int) net.Listener {
	return &listener{Listener: l, c: c, name: name, reserve: reserve}
}

type listener struct {
	net.Listener
	c       *Connections
	name    string
	reserve int
	open    atomic.Int64
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var key netip.Prefix
		hasKey := false
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
			key, hasKey = Key(ap.Addr()), true
		}
		reason, reserved := l.c.admit(key, hasKey, l.reserve)
		if reason != "" {
			if tc, ok := raw.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			raw.Close()
			if l.c.OnRefuse != nil {
				l.c.OnRefuse(l.name, reason)
			}
			continue
		}
		l.changed(1)
		return &conn{Conn: raw, l: l, key: key, hasKey: hasKey, reserved: reserved}, nil
	}
}

func (l *listener) changed(d int64) {
	n := l.open.Add(d)
	if l.c.OnChange != nil {
		l.c.OnChange(l.name, int(n))
	}
}

// conn releases its place once, on its first Close.
type conn struct {
	net.Conn
	l        *listener
	key      netip.Prefix
	hasKey   bool
	reserved bool
	once     sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.c.release(c.key, c.hasKey)
		c.l.changed(-1)
	})
	return err
}

// NetConn returns the connection it wraps (for code that looks for a
// *net.TCPConn, as TLS does for nothing, and tests do).
func (c *conn) NetConn() net.Conn { return c.Conn }

// reservedKey marks a request context whose connection was taken from the
// reserve (see ConnContext).
type reservedKey struct{}

// ConnContext is an http.Server.ConnContext that records in the context
// whether the connection came from the reserve.
func ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if c := ours(nc); c != nil && c.reserved {
		return context.WithValue(ctx, reservedKey{}, true)
	}
	return ctx
}

// Reserved reports whether a request (by its context) arrived on a
// connection taken from the reserve: serve it only if it is a health
// check.
func Reserved(ctx context.Context) bool { v, _ := ctx.Value(reservedKey{}).(bool); return v }

// ours finds our conn under nc, unwrapping connections that expose the one
// they wrap (*tls.Conn does, with NetConn).
func ours(nc net.Conn) *conn {
	for nc != nil {
		if c, ok := nc.(*conn); ok {
			return c
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
}

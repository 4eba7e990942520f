package admission

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7:5060":           "198.51.100.7/32",
		"[2001:db8:1:2:3:4:5:6]:5060": "2001:db8:1:2::/64",
		"[::ffff:198.51.100.7]:5060":  "198.51.100.7/32",
		"198.51.100.7":                "198.51.100.7/32",
	} {
		if k, ok := KeyOf(in); !ok || k.String() != want {
			t.Errorf("KeyOf(%q) = %s %v, want %s", in, k, ok, want)
		}
	}
	if _, ok := KeyOf("x"); ok {
		t.Error("garbage parsed")
	}
}

func TestBuckets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := NewBuckets(10, 20, 1000)
	b.now = func() time.Time { return now }
	k := netip.MustParsePrefix("198.51.100.1/32")
	n := 0
	for b.Allow(k, 1) {
		n++
	}
	if n != 20 {
		t.Fatalf("burst: %d allowed, want 20", n)
	}
	now = now.Add(time.Second)
	n = 0
	for b.Allow(k, 1) {
		n++
	}
	if n != 10 {
		t.Fatalf("after 1 s: %d allowed, want 10", n)
	}
	if !b.Allow(netip.MustParsePrefix("198.51.100.2/32"), 1) {
		t.Fatal("another source is limited by the first")
	}
	if b.Allow(k, 5) {
		t.Fatal("5 tokens taken from an empty bucket")
	}
	// Ten seconds of 5 000 requests a second: 20 + 10 per second pass.
	b2 := NewBuckets(10, 20, 1000)
	clock := time.Unix(0, 0)
	b2.now = func() time.Time { return clock }
	passed := 0
	for range 50_000 {
		clock = clock.Add(200 * time.Microsecond)
		if b2.Allow(k, 1) {
			passed++
		}
	}
	if passed < 115 || passed > 121 {
		t.Fatalf("10 s at 5 000/s: %d passed, want 20+100", passed)
	}
	if (*Buckets)(nil).Allow(k, 1) != true || NewBuckets(0, 1, 1).Allow(k, 100) != true {
		t.Fatal("a nil or rate-0 limiter limits")
	}
}

func TestBucketsBounded(t *testing.T) {
	b := NewBuckets(1, 1, 100)
	for i := range 10_000 {
		b.Allow(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), 1)
		if b.Len() > 100 {
			t.Fatalf("%d buckets, capacity 100", b.Len())
		}
	}
	b.now = func() time.Time { return time.Now().Add(time.Hour) }
	b.Sweep()
	if b.Len() != 0 {
		t.Fatalf("%d buckets after an idle hour", b.Len())
	}
}

// listen starts a wrapped loopback listener that accepts and holds
// connections (closing them when the test ends).
func listen(t *testing.T, c *Connections, reserve int) (net.Listener, *[]net.Conn, *sync.Mutex) {
	t.Helper()
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listen(raw, "test", reserve)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l, &held, &mu
}

// dialFrom connects from src; a connection the server resets before the
// dial returns comes back as nil.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return nil
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the server closed c at once (a reset or EOF,
// or before the dial returned); a connection still open after 300 ms was
// kept.
func refused(c net.Conn) bool {
	if c == nil {
		return true
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

func TestConnectionCaps(t *testing.T) {
	c := NewConnections(Limits{PerSource: 3, Total: 5})
	var mu sync.Mutex
	refusals := map[string]int{}
	c.OnRefuse = func(_, reason string) { mu.Lock(); refusals[reason]++; mu.Unlock() }
	refusedFor := func(reason string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got := refusals[reason]
			mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d refusals for %s, want %d", got, reason, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	l, _, _ := listen(t, c, 2)
	addr := l.Addr().String()
	for range 3 {
		dialFrom(t, "127.0.0.2", addr)
	}
	waitOpen(t, c, 3)
	extra := dialFrom(t, "127.0.0.2", addr)
	refusedFor(RefusedPerSource, 1)
	if !refused(extra) {
		t.Fatal("a fourth connection from one source was kept")
	}
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		dialFrom(t, src, addr)
	}
	waitOpen(t, c, 5)
	// Total reached: two more go to the reserve, then refusals.
	r1, r2 := dialFrom(t, "127.0.0.5", addr), dialFrom(t, "127.0.0.6", addr)
	waitOpen(t, c, 7)
	if refused(r1) || refused(r2) {
		t.Fatal("reserve connections were refused")
	}
	dialFrom(t, "127.0.0.7", addr)
	refusedFor(RefusedTotal, 1)
	if c.Open() != 7 {
		t.Fatalf("%d open, want 7", c.Open())
	}
}

func waitOpen(t *testing.T, c *Connections, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d open, want %d", c.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Closing frees the place; the reserve is visible to HTTP handlers.
func TestReserveForHealthChecks(t *testing.T) {
	c := NewConnections(Limits{Total: 1})
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ConnContext: ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, Reserved(r.Context()))
	})}
	go srv.Serve(c.Listen(raw, "http", 1))
	t.Cleanup(func() { srv.Close() })
	get := func(client *http.Client) string {
		t.Helper()
		res, err := client.Get("http://" + raw.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b := make([]byte, 16)
		n, _ := res.Body.Read(b)
		return string(b[:n])
	}
	first := &http.Client{Transport: &http.Transport{}}
	if got := get(first); got != "false" {
		t.Fatalf("first connection reserved: %s", got)
	}
	second := &http.Client{Transport: &http.Transport{}}
	if got := get(second); got != "true" {
		t.Fatalf("second connection (beyond Total=1) not marked reserved: %s", got)
	}
	first.CloseIdleConnections()
	second.CloseIdleConnections()
	waitOpen(t, c, 0)
	_ = context.Background()
}

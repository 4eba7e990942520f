package sipws

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// serve runs an HTTP server with the listener at /ws and an upgrader that
// echoes text frames, as sipgo's transport would read them.
func serve(t *testing.T) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln.Addr(), nil)
	mux := http.NewServeMux()
	mux.Handle("/ws", l)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := (ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Subprotocol }}).Upgrade(c); err != nil {
					return
				}
				for {
					msg, op, err := wsutil.ReadClientData(c)
					if err != nil {
						return
					}
					wsutil.WriteServerMessage(c, op, msg)
				}
			}()
		}
	}()
	return l, ln.Addr().String()
}

func TestUpgradeAndFlowClose(t *testing.T) {
	l, addr := serve(t)
	closed := make(chan string, 1)
	l.OnClose(func(flow string) { closed <- flow })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, hs, err := ws.Dialer{Protocols: []string{Subprotocol}}.Dial(ctx, "ws://"+addr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	if hs.Protocol != Subprotocol {
		t.Fatalf("subprotocol %q", hs.Protocol)
	}
	if err := wsutil.WriteClientText(conn, []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	msg, err := wsutil.ReadServerText(conn)
	if err != nil || !strings.HasPrefix(string(msg), "OPTIONS") {
		t.Fatalf("echo %q %v", msg, err)
	}
	flow := conn.LocalAddr().String()
	if !l.Open(flow) || l.Flows() != 1 {
		t.Fatalf("flow %s not open", flow)
	}
	conn.Close()
	select {
	case got := <-closed:
		if got != flow {
			t.Fatalf("closed flow %s, want %s", got, flow)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no close notification")
	}
	if l.Open(flow) {
		t.Fatal("closed flow still open")
	}
}

func TestRefusals(t *testing.T) {
	_, addr := serve(t)
	res, err := http.Get("http://" + addr + "/ws")
	if err != nil || res.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %v %v", res, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, _, err := (ws.Dialer{Protocols: []string{"chat"}}).Dial(ctx, "ws://"+addr+"/ws"); err == nil {
		t.Fatal("upgrade without the sip subprotocol accepted")
	}
}

// FuzzHeaderHas: token matching never panics and only finds whole tokens.
func FuzzHeaderHas(f *testing.F) {
	f.Add("Upgrade", "upgrade")
	f.Add("keep-alive, Upgrade", "upgrade")
	f.Add("sip,chat", "sip")
	f.Fuzz(func(t *testing.T, value, token string) {
		h := http.Header{}
		h.Add("X", value)
		if headerHas(h, "X", token) && !strings.Contains(strings.ToLower(value), strings.ToLower(strings.TrimSpace(token))) {
			t.Fatalf("%q found in %q", token, value)
		}
	})
}

// CloseIdle closes the flows older than its deadline that keep does not
// want, and only those.
func TestCloseIdle(t *testing.T) {
	l, addr := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conns []net.Conn
	for range 2 {
		c, _, _, err := ws.Dialer{Protocols: []string{Subprotocol}}.Dial(ctx, "ws://"+addr+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Flows() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flows open, want 2", l.Flows())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.CloseIdle(time.Hour, func(string) bool { return false }); n != 0 {
		t.Fatalf("closed %d flows younger than the deadline", n)
	}
	keep := conns[0].LocalAddr().String()
	if n := l.CloseIdle(0, func(flow string) bool { return flow == keep }); n != 1 {
		t.Fatalf("closed %d flows, want 1", n)
	}
	conns[1].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[1].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the idle flow is still open: %v", err)
	}
	if !l.Open(keep) {
		t.Fatal("the flow to keep was closed")
	}
}

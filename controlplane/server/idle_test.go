package server

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/siptest"
)

// A browser's WebSocket outlives the HTTP server's header timeout: the
// hijacked connection carries no deadline.
func TestIdleWebSocketStaysUp(t *testing.T) {
	if testing.Short() {
		t.Skip("waits past the HTTP header timeout")
	}
	e := start(t, nil)
	p, err := siptest.NewBrowser(e.srv.HTTPAddr(), "idle")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if res, err := p.Register(ctx(t), "", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v %v", res, err)
	}
	time.Sleep(headerTimeout + time.Second)
	if e.srv.Registry.Len() != 1 {
		t.Fatal("the binding went with an idle WebSocket")
	}
	if res, err := p.Send(ctx(t), sip.OPTIONS, "", nil, ""); err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS after idling: %v %v", res, err)
	}
}

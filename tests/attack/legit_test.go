package attack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// legitCall is what a legitimate browser does while the attack runs: it
// registers from 127.0.0.1 over WebSocket (digest in standalone mode; the
// sipp PBX accepts it in trunk mode), calls echo (standalone) or the PBX
// (trunk), checks that its media comes back (browser -> strait -> echo or
// PBX -> strait -> browser: both directions through the dataplane), and
// hangs up. It returns what broke, so that it can run beside an attacker;
// callTook says how long the call took to be answered.
func (tg *target) legitCall(ctx context.Context) (callTook time.Duration, err error) {
	phone, err := tg.legitPhone(ctx)
	if err != nil {
		return 0, err
	}
	defer phone.Close()
	return tg.callFrom(ctx, phone)
}

// legitPhone connects the legitimate browser and registers it.
func (tg *target) legitPhone(ctx context.Context) (*siptest.Phone, error) {
	phone, err := siptest.NewBrowser(tg.HTTPAddr, legitUser)
	if err != nil {
		return nil, fmt.Errorf("legitimate caller: %w", err)
	}
	res, err := phone.Register(ctx, legitPassword, 300)
	if err != nil {
		phone.Close()
		return nil, fmt.Errorf("legitimate REGISTER: %w", err)
	}
	if res.StatusCode != 200 {
		phone.Close()
		return nil, fmt.Errorf("legitimate REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	return phone, nil
}

// callFrom places the legitimate call from a registered phone and checks
// its media both ways (see legitCall).
func (tg *target) callFrom(ctx context.Context, phone *siptest.Phone) (callTook time.Duration, err error) {
	media, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		return 0, fmt.Errorf("legitimate caller's media: %w", err)
	}
	defer media.Close()
	callee := "echo"
	if tg.cfg.Trunk {
		callee = "1000"
	}
	start := time.Now()
	call, err := phone.Invite(ctx, callee, []byte(media.Offer))
	if err != nil {
		return 0, fmt.Errorf("legitimate INVITE %s: %w", callee, err)
	}
	res, err := call.WaitAnswer(ctx, legitPassword)
	if err != nil || res == nil || res.StatusCode != 200 {
		return 0, fmt.Errorf("legitimate INVITE %s: %v %v", callee, res, err)
	}
	callTook = time.Since(start)
	defer call.Hangup(context.Background())
	if err := call.Ack(ctx); err != nil {
		return 0, fmt.Errorf("legitimate ACK: %w", err)
	}
	if err := media.Accept(string(res.Body())); err != nil {
		return 0, fmt.Errorf("legitimate caller's media refuses the answer: %w", err)
	}
	if err := media.WaitConnected(ctx); err != nil {
		return 0, fmt.Errorf("legitimate caller's media (ICE, DTLS): %w", err)
	}
	if err := echoed(ctx, media, 20, 10); err != nil {
		return 0, fmt.Errorf("legitimate call to %s: %w", callee, err)
	}
	if err := call.Hangup(ctx); err != nil {
		return 0, fmt.Errorf("legitimate BYE: %w", err)
	}
	return callTook, nil
}

// echoed sends count tagged PCMU packets, one each 20 ms, and waits until
// at least want of them came back.
func echoed(ctx context.Context, b *mediatest.Browser, count, want int) error {
	return echoedFrom(ctx, b, 1000, count, want)
}

// echoedFrom is echoed with sequence numbers from seq0 (a browser's stream
// never goes back: SRTP would refuse a repeat as a replay).
func echoedFrom(ctx context.Context, b *mediatest.Browser, seq0 uint16, count, want int) error {
	tagBytes := make([]byte, 4)
	rand.Read(tagBytes)
	tag := []byte("legit-" + hex.EncodeToString(tagBytes))
	payload := func(i int) []byte {
		p := bytes.Repeat([]byte{0xff}, 160)
		copy(p, fmt.Sprintf("%s-%03d", tag, i))
		return p
	}
	got := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; got < want; {
		select {
		case <-tick.C:
			if sent < count {
				if err := b.Send(0, seq0+uint16(sent), uint32(160)*uint32(seq0+uint16(sent)), sent == 0, payload(sent)); err != nil {
					return fmt.Errorf("sending media: %w", err)
				}
				sent++
			}
		case pk := <-b.Received:
			if bytes.HasPrefix(pk.Payload, tag) {
				got++
			}
		case <-ctx.Done():
			return fmt.Errorf("%d of %d packets came back: %w", got, count, ctx.Err())
		}
	}
	return nil
}

// callDuring places the legitimate call while a is underway and fails the
// test if it does not work.
func (tg *target) callDuring(a *attack) {
	tg.t.Helper()
	a.waitUnderway(tg.t)
	took, err := tg.legitCall(tg.ctx(30 * time.Second))
	if err != nil {
		tg.t.Fatalf("a legitimate call during the attack (%d sent so far): %v", a.Sent.Load(), err)
	}
	tg.t.Logf("legitimate call during the attack: answered in %s, media both ways", took.Round(time.Millisecond))
}

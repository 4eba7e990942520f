package attack

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	psdp "github.com/pion/sdp/v3"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// The RTP bleed attacks of issue 8 item 2 (CVE-2017-14099 class) and the
// media move of issue 9 item 7: an attacker sprays the plain RTP port range
// with RTP, hoping a leg learns it as its peer and sends it the call's
// media.

// spray is an attacker that sends runs of in-sequence RTP packets to every
// port of a range, round after round, from its own address, and counts
// every datagram that comes back to it (what it captured).
type spray struct {
	*attack
	captured atomic.Int64
	ports    int
}

// startSpray starts a spray from attacker address src over ports lo..hi,
// runs of run packets per port every interval, for at most d.
func startSpray(t *testing.T, src string, lo, hi, run int, interval, d time.Duration) *spray {
	t.Helper()
	conn, err := udpFrom(src)
	if err != nil {
		t.Fatal(err)
	}
	s := &spray{ports: hi - lo + 1}
	go func() { // the capture: anything strait sends to the attacker
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			s.captured.Add(1)
		}
	}()
	t.Cleanup(func() { conn.Close() })
	ip := netip.MustParseAddr("127.0.0.1")
	s.attack = startAttack(t, d, func(ctx context.Context, a *attack) error {
		seq := uint16(1)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0xbad5eed}, Payload: bytes.Repeat([]byte{0x7f}, 160)}
		for sent := 0; sent < 400000; {
			for port := lo; port <= hi; port++ {
				for i := 0; i < run; i++ {
					pkt.SequenceNumber = seq + uint16(i)
					pkt.Timestamp = uint32(pkt.SequenceNumber) * 160
					b, _ := pkt.Marshal()
					if _, err := conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(ip, uint16(port))); err != nil {
						return err
					}
					sent++
					a.Sent.Add(1)
				}
			}
			seq += uint16(run)
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	})
	return s
}

// portRange parses "lo-hi".
func portRange(t *testing.T, r string) (int, int) {
	t.Helper()
	a, b, _ := strings.Cut(r, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("port range %q", r)
	}
	return lo, hi
}

// plainCall is a plain SIP phone (UDP, 127.0.0.1) in a call to echo: its
// RTP endpoint and the address strait answered with.
type plainCall struct {
	phone *siptest.Phone
	call  *siptest.Dialog
	media *mediatest.Plain
	// remote is strait's media address for the call (the answer's).
	remote netip.AddrPort
	seq    uint16
	sdpV   int
}

// plainEchoCall registers the legitimate user over UDP and calls echo
// with a plain RTP/AVP offer from a fresh endpoint on 127.0.0.1.
func (tg *target) plainEchoCall(ctx context.Context) (*plainCall, error) {
	phone, err := siptest.NewUDP(tg.SIPAddr, legitUser)
	if err != nil {
		return nil, err
	}
	tg.t.Cleanup(phone.Close)
	if res, err := phone.Register(ctx, legitPassword, 300); err != nil || res.StatusCode != 200 {
		return nil, fmt.Errorf("REGISTER over UDP: %v %v", res, err)
	}
	media, err := mediatest.NewPlain(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	tg.t.Cleanup(media.Close)
	pc := &plainCall{phone: phone, media: media, seq: 100, sdpV: 1}
	call, err := phone.Invite(ctx, "echo", siptest.PlainSDP(pc.sdpV, media.Addr(), media.RTCPAddr(), "sendrecv", false))
	if err != nil {
		return nil, err
	}
	pc.call = call
	res, err := call.WaitAnswer(ctx, legitPassword)
	if err != nil || res == nil || res.StatusCode != 200 {
		return nil, fmt.Errorf("INVITE echo: %v %v", res, err)
	}
	if err := call.Ack(ctx); err != nil {
		return nil, err
	}
	if pc.remote, err = answerAddr(res.Body()); err != nil {
		return nil, err
	}
	return pc, nil
}

// answerAddr is the RTP address of an SDP answer's first media section.
func answerAddr(body []byte) (netip.AddrPort, error) {
	var d psdp.SessionDescription
	if err := d.Unmarshal(body); err != nil {
		return netip.AddrPort{}, err
	}
	if len(d.MediaDescriptions) == 0 || d.ConnectionInformation == nil && d.MediaDescriptions[0].ConnectionInformation == nil {
		return netip.AddrPort{}, fmt.Errorf("answer without media or address: %s", body)
	}
	c := d.ConnectionInformation
	if mc := d.MediaDescriptions[0].ConnectionInformation; mc != nil {
		c = mc
	}
	ip, err := netip.ParseAddr(c.Address.Address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, uint16(d.MediaDescriptions[0].MediaName.Port.Value)), nil
}

// echo sends count tagged packets from the phone's endpoint (one each
// 20 ms) and returns how many came back to it; from, when set, is another
// endpoint the packets are sent from instead (replies still counted at the
// phone's endpoint only if they arrive there).
func (pc *plainCall) echo(ctx context.Context, from *mediatest.Plain, count int) (int, error) {
	if from == nil {
		from = pc.media
	}
	tag := fmt.Sprintf("legit-%d-", time.Now().UnixNano())
	got := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	var quiet <-chan time.Time
	for {
		select {
		case <-tick.C:
			if sent < count {
				p := bytes.Repeat([]byte{0xff}, 160)
				copy(p, fmt.Sprintf("%s%03d", tag, sent))
				pc.seq++
				if err := from.SendRTP(pc.remote, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: pc.seq,
					Timestamp: uint32(pc.seq) * 160, SSRC: 0x1e617}, Payload: p}); err != nil {
					return got, err
				}
				sent++
				if sent == count {
					quiet = time.After(time.Second) // then wait for stragglers
				}
			}
		case pk := <-pc.media.Received:
			if pk.RTP != nil && bytes.HasPrefix(pk.RTP.Payload, []byte(tag)) {
				got++
				if got == count {
					return got, nil
				}
			}
		case <-quiet:
			return got, nil
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// TestRTPBleedEchoCall is issue 8 item 2 against a plain SIP phone's echo
// call: an attacker at 127.0.0.2 sprays every port of the RTP range with
// runs of in-sequence RTP before and during the call. Before: the leg
// latched to the first source and ports were handed out in order; the
// attacker captured the call's media (197 packets in the report) and the
// phone heard nothing. Now: the attacker captures nothing, the phone gets
// its media back, a browser call during the attack works, and the drops
// are counted.
func TestRTPBleedEchoCall(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	lo, hi := portRange(t, tg.RTPPorts)
	before := tg.counter("strait_dataplane_drops_total", "reason=unknown_source")
	sp := startSpray(t, attackerIP(0), lo, hi, 5, 100*time.Millisecond, 10*time.Second)
	sp.waitUnderway(t)
	ctx := tg.ctx(30 * time.Second)
	pc, err := tg.plainEchoCall(ctx)
	if err != nil {
		t.Fatalf("plain phone's call to echo during the attack: %v", err)
	}
	const count = 100
	got, err := pc.echo(ctx, nil, count)
	if err != nil || got < count*9/10 {
		t.Fatalf("the phone got %d of %d packets back during the attack (%v)", got, count, err)
	}
	tg.callDuring(sp.attack)
	if err := pc.call.Hangup(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	sp.wait(t)
	if c := sp.captured.Load(); c != 0 {
		t.Fatalf("the attacker captured %d datagrams (sent %d to %d ports)", c, sp.Sent.Load(), sp.ports)
	}
	n := tg.waitCounted(before+50, "strait_dataplane_drops_total", "reason=unknown_source")
	t.Logf("attacker sent %d RTP packets to %d ports, captured 0 (before: 197 of an echo call's); the phone got %d of %d back; %g counted as drop unknown_source",
		sp.Sent.Load(), sp.ports, got, count, n-before)
}

// TestRTPBleedTrunkCall: the same spray during a browser's call through
// the trunk to a PBX that only echoes (it sends nothing until media reaches
// it): the PBX leg must keep its SDP address, the attacker captures
// nothing, the browser hears its echo.
func TestRTPBleedTrunkCall(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{Trunk: true})
	lo, hi := portRange(t, tg.RTPPorts)
	before := tg.counter("strait_dataplane_drops_total", "reason=unknown_source")
	sp := startSpray(t, attackerIP(1), lo, hi, 5, 100*time.Millisecond, 10*time.Second)
	tg.callDuring(sp.attack)
	tg.callDuring(sp.attack) // a second call gets other ports, still sprayed
	sp.wait(t)
	if c := sp.captured.Load(); c != 0 {
		t.Fatalf("the attacker captured %d datagrams (sent %d to %d ports)", c, sp.Sent.Load(), sp.ports)
	}
	n := tg.waitCounted(before+50, "strait_dataplane_drops_total", "reason=unknown_source")
	t.Logf("attacker sent %d RTP packets to %d ports during two trunk calls, captured 0; %g counted as drop unknown_source", sp.Sent.Load(), sp.ports, n-before)
}

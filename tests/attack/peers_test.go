package attack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// Known attacks on peers (rtpengine, Asterisk, FreeSWITCH), tried on
// strait: issue 8 item 11. The pion advisories are unit tests
// (dataplane/dtlsleg, dataplane/relay).

// clientHello returns a real DTLS 1.2 ClientHello, as a browser's DTLS
// stack (pion's here) sends it first.
func clientHello(t *testing.T) []byte {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c, err := dtls.ClientWithOptions(cli, srv.LocalAddr(), dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
			dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80))
		if err == nil {
			c.HandshakeContext(ctx)
			c.Close()
		}
	}()
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := srv.ReadFromUDP(buf)
	if err != nil || n < 14 || buf[0] != 22 || buf[13] != 1 {
		t.Fatalf("no ClientHello from pion: %d bytes, %v", n, err)
	}
	return buf[:n]
}

// TestDTLSClientHelloRace is the DTLS ClientHello race (EnableSecurity
// ES2023-03 for rtpengine, CVE-2023-49786 for Asterisk, ES2023-02 for
// FreeSWITCH): attackers that passed no ICE check send real ClientHellos to
// every WebRTC port, before and while a browser's call sets up, hoping to
// take over or reset its DTLS handshake. The call works, nothing is
// answered, the ClientHellos are counted.
func TestDTLSClientHelloRace(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	hello := clientHello(t)
	lo, hi := portRange(t, tg.WebRTCPorts)
	before := tg.counter("strait_dataplane_drops_total", "reason=unknown_source")
	var answered atomic.Int64
	a := startAttack(t, 8*time.Second, func(ctx context.Context, a *attack) error {
		var conns []*net.UDPConn
		for i := 0; i < 8; i++ {
			c, err := udpFrom(attackerIP(i))
			if err != nil {
				return err
			}
			defer c.Close()
			conns = append(conns, c)
			go func() { // anything strait answers
				buf := make([]byte, 2048)
				for {
					if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
					answered.Add(1)
				}
			}()
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for sent := 0; sent < 100000; {
			for _, c := range conns {
				for port := lo; port <= hi; port++ {
					if _, err := c.WriteToUDPAddrPort(hello, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))); err != nil {
						return err
					}
					sent++
					a.Sent.Add(1)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	})
	tg.callDuring(a)
	tg.callDuring(a)
	a.wait(t)
	if n := answered.Load(); n != 0 {
		t.Fatalf("strait answered %d datagrams to the attackers", n)
	}
	n := tg.waitCounted(before+float64(a.Sent.Load())/2, "strait_dataplane_drops_total", "reason=unknown_source")
	t.Logf("%d ClientHellos from 8 addresses to %d WebRTC ports: none answered, %g counted as drop unknown_source; two calls set up during it",
		a.Sent.Load(), hi-lo+1, n-before)
}

// sdesCall is a plain SIP phone's echo call with SDES-SRTP (RTP/SAVP).
// sdpIP is the address its SDP names (a private one for a phone behind
// NAT, whose media comes from 127.0.0.1 all the same).
func (tg *target) sdesCall(ctx context.Context, sdpIP string) (*plainCall, error) {
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
	key := make([]byte, 30)
	rand.Read(key)
	offer := fmt.Sprintf("v=0\r\no=phone 4242 1 IN IP4 %[1]s\r\ns=phone\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n"+
		"m=audio %[2]d RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"+
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%[3]s\r\na=ptime:20\r\na=sendrecv\r\n",
		sdpIP, media.Addr().Port(), base64.StdEncoding.EncodeToString(key))
	pc := &plainCall{phone: phone, media: media, seq: 100, sdpV: 1}
	if pc.call, err = phone.Invite(ctx, "echo", []byte(offer)); err != nil {
		return nil, err
	}
	res, err := pc.call.WaitAnswer(ctx, legitPassword)
	if err != nil || res == nil || res.StatusCode != 200 {
		return nil, fmt.Errorf("INVITE echo with SDES: %v %v", res, err)
	}
	if err := pc.call.Ack(ctx); err != nil {
		return nil, err
	}
	if pc.remote, err = answerAddr(res.Body()); err != nil {
		return nil, err
	}
	theirs, err := answerKey(res.Body())
	if err != nil {
		return nil, err
	}
	if err := media.UseSDES(srtp.ProtectionProfileAes128CmHmacSha1_80, key, theirs); err != nil {
		return nil, err
	}
	return pc, nil
}

// answerKey is the inline key of an SDP answer's a=crypto line.
func answerKey(body []byte) ([]byte, error) {
	for _, line := range strings.Split(string(body), "\n") {
		if _, v, ok := strings.Cut(line, "inline:"); ok && strings.HasPrefix(line, "a=crypto:") {
			v, _, _ = strings.Cut(strings.TrimSpace(v), "|")
			return base64.StdEncoding.DecodeString(v)
		}
	}
	return nil, fmt.Errorf("answer without a=crypto: %s", body)
}

// forgedSRTP is an SRTP-looking packet nobody keyed: an RTP header, junk,
// and a made-up 10-byte authentication tag.
func forgedSRTP(seq uint16) []byte {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0xf0f0}, Payload: make([]byte, 170)}
	rand.Read(p.Payload)
	b, _ := p.Marshal()
	return b
}

// TestSpoofedSRTPIsNotLearnt is CVE-2025-53399 (rtpengine learnt a media
// source from spoofed packets, without checking SRTP authentication first):
// a phone behind NAT (its SDP names 10.0.0.5, its media comes from
// 127.0.0.1) calls echo with SDES while an attacker behind the same NAT
// address sprays the RTP range with in-sequence SRTP it cannot key. The
// attacker is never learnt and captures nothing; the phone is learnt from
// its first authentic packet and hears its echo; the forgeries are counted.
func TestSpoofedSRTPIsNotLearnt(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	lo, hi := portRange(t, tg.RTPPorts)
	before := tg.counter("strait_dataplane_drops_total", "reason=srtp_auth")
	conn, err := udpFrom("127.0.0.1") // the NAT's address, shared with the phone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var captured atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			captured.Add(1)
		}
	}()
	a := startAttack(t, 8*time.Second, func(ctx context.Context, a *attack) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); a.Sent.Load() < 200000; seq += 5 {
			for port := lo; port <= hi; port++ {
				for i := uint16(0); i < 5; i++ {
					if _, err := conn.WriteToUDPAddrPort(forgedSRTP(seq+i), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))); err != nil {
						return err
					}
					a.Sent.Add(1)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	})
	a.waitUnderway(t)
	ctx := tg.ctx(30 * time.Second)
	pc, err := tg.sdesCall(ctx, "10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	const count = 100
	got, err := pc.echo(ctx, nil, count)
	if err != nil || got < count*9/10 {
		t.Fatalf("the phone got %d of %d back during the attack (%v)", got, count, err)
	}
	pc.call.Hangup(ctx)
	a.wait(t)
	if c := captured.Load(); c != 0 {
		t.Fatalf("the attacker captured %d datagrams", c)
	}
	n := tg.waitCounted(before+50, "strait_dataplane_drops_total", "reason=srtp_auth")
	t.Logf("%d forged SRTP packets from the phone's NAT address: captured 0, %g counted as drop srtp_auth; the phone got %d of %d back",
		a.Sent.Load(), n-before, got, count)
}

// TestBadSRTPNeverEndsTheCall is CVE-2021-41105 (FreeSWITCH hung up a call
// after 100 SRTP packets that failed authentication): the phone's own
// address sends a thousand corrupted SRTP packets in the middle of its
// SDES call. They are dropped and counted, the call stays up (no BYE), and
// the media that follows still comes back.
func TestBadSRTPNeverEndsTheCall(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{})
	ctx := tg.ctx(40 * time.Second)
	pc, err := tg.sdesCall(ctx, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pc.echo(ctx, nil, 20); err != nil || got < 18 {
		t.Fatalf("before: %d of 20 back (%v)", got, err)
	}
	before := tg.counter("strait_dataplane_drops_total", "reason=srtp_auth")
	bad := 0
	for i := 0; i < 1000; i++ {
		p := forgedSRTP(uint16(5000 + i))
		if _, err := pc.media.RTP.WriteToUDPAddrPort(p, pc.remote); err != nil {
			t.Fatal(err)
		}
		bad++
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // no need to overflow a socket
		}
	}
	n := tg.waitCounted(before+float64(bad), "strait_dataplane_drops_total", "reason=srtp_auth")
	select {
	case <-pc.call.Ended():
		t.Fatal("strait ended the call")
	default:
	}
	got, err := pc.echo(ctx, nil, 50)
	if err != nil || got < 45 {
		t.Fatalf("after %d bad packets: %d of 50 back (%v)", bad, got, err)
	}
	select {
	case <-pc.call.Ended():
		t.Fatal("strait ended the call")
	default:
	}
	if err := pc.call.Hangup(ctx); err != nil {
		t.Fatalf("the phone's BYE: %v", err)
	}
	t.Logf("%d bad SRTP packets from the phone: %g counted as drop srtp_auth, the call stayed up, %d of 50 came back after", bad, n-before, got)
}

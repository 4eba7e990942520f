package mediatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Browser is a WebRTC peer as a browser is one: full ICE (controlling),
// DTLS with a self-signed certificate, SRTP, rtcp-mux, RTCP sender and
// receiver reports. It sends with the payload types and sequence numbers
// the test chooses (through a raw track) and records what it receives.
type Browser struct {
	PC *webrtc.PeerConnection

	// Offer is the browser's SDP offer; Ufrag, Pwd and Fingerprint
	// (algorithm "sha-256") are parsed from it, MID is its audio mid.
	Offer                        string
	Ufrag, Pwd, Fingerprint, MID string

	// Received delivers every RTP packet the browser receives, RTCP every
	// RTCP packet (both directions of its reports' peers).
	Received chan *rtp.Packet
	RTCP     chan rtcp.Packet

	track     *rawTrack
	sender    *webrtc.RTPSender
	connected chan struct{}
	failed    chan struct{}
	closeOnce sync.Once
}

// BrowserOptions tune a Browser.
type BrowserOptions struct {
	// Codecs to offer (default BrowserAudio).
	Codecs []Codec
	// Profiles limits the SRTP profiles offered in DTLS (default: pion's,
	// GCM first).
	Profiles []dtls.SRTPProtectionProfile
	// IPv6 gathers on ::1 instead of 127.0.0.1.
	IPv6 bool
	// Video adds a VP8 video section (receive only) after the audio one,
	// in the same BUNDLE group, as a browser's video call does.
	Video bool
}

// NewBrowser creates a browser peer and its offer (gathering complete, no
// trickle, as JsSIP sends it).
func NewBrowser(opt BrowserOptions) (*Browser, error) {
	b, err := newPeer(opt)
	if err != nil {
		return nil, err
	}
	offer, err := b.PC.CreateOffer(nil)
	if err != nil {
		b.Close()
		return nil, err
	}
	if err := b.setLocal(offer); err != nil {
		b.Close()
		return nil, err
	}
	b.Offer = b.PC.LocalDescription().SDP
	if err := b.parseOffer(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// NewAnswerer creates a browser peer that will answer an SBC's offer (a
// call toward the browser): see Answer.
func NewAnswerer(opt BrowserOptions) (*Browser, error) { return newPeer(opt) }

// Answer applies the SBC's offer and returns the browser's complete
// answer (gathering done, as JsSIP sends it).
func (b *Browser) Answer(offer string) (string, error) {
	if err := b.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("mediatest: the browser refuses the offer: %w", err)
	}
	answer, err := b.PC.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := b.setLocal(answer); err != nil {
		return "", err
	}
	return b.PC.LocalDescription().SDP, nil
}

// setLocal applies a local description and waits until ICE gathering is
// complete.
func (b *Browser) setLocal(d webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(b.PC)
	if err := b.PC.SetLocalDescription(d); err != nil {
		return err
	}
	select {
	case <-gathered:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("mediatest: ICE gathering did not complete")
	}
}

// newPeer creates the browser's PeerConnection with a send track and
// readers for what it receives.
func newPeer(opt BrowserOptions) (*Browser, error) {
	if len(opt.Codecs) == 0 {
		opt.Codecs = BrowserAudio
	}
	m := &webrtc.MediaEngine{}
	for _, c := range opt.Codecs {
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: c.Clock, Channels: c.Channels},
			PayloadType:        webrtc.PayloadType(c.PT),
		}, webrtc.RTPCodecTypeAudio)
		if err != nil {
			return nil, err
		}
	}
	if opt.Video {
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			PayloadType:        96,
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return nil, err
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Chrome plays an unsignalled SSRC on a single audio section; pion
	// does that for an offerer only with this setting.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	if opt.IPv6 {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP6})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if len(opt.Profiles) > 0 {
		se.SetSRTPProtectionProfiles(opt.Profiles...)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	b := &Browser{
		PC:        pc,
		Received:  make(chan *rtp.Packet, 4096),
		RTCP:      make(chan rtcp.Packet, 1024),
		connected: make(chan struct{}),
		failed:    make(chan struct{}),
	}
	first := opt.Codecs[0]
	b.track = &rawTrack{
		codec: webrtc.RTPCodecCapability{MimeType: "audio/" + first.Name, ClockRate: first.Clock, Channels: first.Channels},
		bound: make(chan struct{}),
	}
	if b.sender, err = pc.AddTrack(b.track); err != nil {
		pc.Close()
		return nil, err
	}
	if opt.Video {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	var once, failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(b.connected) })
		case webrtc.PeerConnectionStateFailed:
			failOnce.Do(func() { close(b.failed) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		go func() {
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				select {
				case b.Received <- p:
				default:
				}
			}
		}()
		go b.readRTCP(r.ReadRTCP)
	})
	go b.readRTCP(b.sender.ReadRTCP)
	return b, nil
}

func (b *Browser) readRTCP(read func() ([]rtcp.Packet, interceptor.Attributes, error)) {
	for {
		pkts, _, err := read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			select {
			case b.RTCP <- p:
			default:
			}
		}
	}
}

func (b *Browser) parseOffer() error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(b.Offer); err != nil {
		return err
	}
	for _, md := range d.MediaDescriptions {
		if md.MediaName.Media != "audio" {
			continue
		}
		b.Ufrag, _ = md.Attribute("ice-ufrag")
		b.Pwd, _ = md.Attribute("ice-pwd")
		b.MID, _ = md.Attribute("mid")
		fp, ok := md.Attribute("fingerprint")
		if !ok {
			fp, _ = d.Attribute("fingerprint")
		}
		if alg, val, ok := strings.Cut(fp, " "); ok && strings.EqualFold(alg, "sha-256") {
			b.Fingerprint = val
		}
	}
	if b.Ufrag == "" || b.Pwd == "" || b.Fingerprint == "" {
		return fmt.Errorf("mediatest: offer lacks ICE credentials or fingerprint:\n%s", b.Offer)
	}
	return nil
}

// RestartICE makes a new offer with new ICE credentials (RFC 8445 section
// 9), as a browser does after a network change; Offer, Ufrag and Pwd are
// updated. Accept the SBC's answer to complete it.
func (b *Browser) RestartICE() error {
	offer, err := b.PC.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return err
	}
	if err := b.setLocal(offer); err != nil {
		return err
	}
	b.Offer = b.PC.LocalDescription().SDP
	return b.parseOffer()
}

// Accept applies the SBC's answer; ICE and DTLS start.
func (b *Browser) Accept(answer string) error {
	return b.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// WaitConnected waits until ICE and DTLS completed, or fails.
func (b *Browser) WaitConnected(ctx context.Context) error {
	select {
	case <-b.connected:
		return nil
	case <-b.failed:
		return errors.New("mediatest: peer connection failed")
	case <-ctx.Done():
		return fmt.Errorf("mediatest: not connected (state %s): %w", b.PC.ConnectionState(), ctx.Err())
	}
}

// Send sends one RTP packet with the given header fields and payload (the
// SSRC is the browser's own).
func (b *Browser) Send(pt uint8, seq uint16, ts uint32, marker bool, payload []byte) error {
	return b.track.write(&rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, Marker: marker}, payload)
}

// SSRC is the SSRC the browser sends with (0 before negotiation).
func (b *Browser) SSRC() uint32 { return b.track.ssrcValue() }

// Close closes the peer connection.
func (b *Browser) Close() {
	b.closeOnce.Do(func() { b.PC.Close() })
}

// rawTrack is a TrackLocal that writes packets with the caller's payload
// type and sequence numbers, where webrtc.TrackLocalStaticRTP would rewrite
// them.
type rawTrack struct {
	codec webrtc.RTPCodecCapability
	bound chan struct{}

	mu     sync.Mutex
	writer webrtc.TrackLocalWriter
	ssrc   uint32
}

func (t *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, t.codec.MimeType) {
			t.mu.Lock()
			first := t.writer == nil
			t.writer, t.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
			t.mu.Unlock()
			if first {
				close(t.bound)
			}
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *rawTrack) Unbind(webrtc.TrackLocalContext) error { return nil }
func (t *rawTrack) ID() string                            { return "audio" }
func (t *rawTrack) RID() string                           { return "" }
func (t *rawTrack) StreamID() string                      { return "mediatest" }
func (t *rawTrack) Kind() webrtc.RTPCodecType             { return webrtc.RTPCodecTypeAudio }

func (t *rawTrack) ssrcValue() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ssrc
}

func (t *rawTrack) write(h *rtp.Header, payload []byte) error {
	select {
	case <-t.bound:
	case <-time.After(5 * time.Second):
		return errors.New("mediatest: track never bound")
	}
	t.mu.Lock()
	w, ssrc := t.writer, t.ssrc
	t.mu.Unlock()
	h.SSRC = ssrc
	_, err := w.WriteRTP(h, payload)
	return err
}

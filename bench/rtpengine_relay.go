package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpengine"
	"github.com/strait-sbc/strait/bench/webrtcclient"
)

// rtpengineRelay measures rtpengine doing the same WebRTC <-> plain work:
// the browser's offer goes through it toward the plain side (ICE, DTLS and
// SRTP removed), the plain side's answer comes back converted for the
// browser, and rtpengine then does ICE and DTLS-SRTP with the client leg.
type rtpengineRelay struct {
	d *rtpengine.Daemon
	h *harness
}

func (r *rtpengineRelay) target(kind) string { return report.TargetRtpengine }
func (r *rtpengineRelay) pid() int           { return r.d.PID() }

func (r *rtpengineRelay) sample() (sample, error) {
	cpu, err := procstat.CPU(r.d.PID())
	if err != nil {
		return sample{}, err
	}
	rss, _ := procstat.RSS(r.d.PID())
	sched, _ := procstat.SchedStat(r.d.PID())
	_, recv := r.h.engine.Totals()
	return sample{cpu: cpu, sched: sched, rss: rss, received: recv}, nil
}

// saturation reports the sockets rtpengine gave up on since the last
// call: it reads at most 50 datagrams from a socket per wake-up and never
// reads one again that had more queued 5 times (see rtpengine.Strikes).
func (r *rtpengineRelay) saturation() string {
	struck, dead := r.d.Strikes()
	if struck == 0 && dead == 0 {
		return ""
	}
	return fmt.Sprintf("rtpengine's log: at least %d of its sockets had more than 50 datagrams queued when read, at least %d abandoned for good after 5 such strikes (its receive loop's compiled-in limits)", struck, dead)
}

func (r *rtpengineRelay) memory() (float64, string, error) {
	rss, err := procstat.RSS(r.d.PID())
	return float64(rss), "resident set size", err
}

// Options of the ng commands. Toward the plain side: RTP/AVP without ICE
// or crypto, RTCP demultiplexed; toward the browser: ICE forced (rtpengine
// as a full agent), UDP/TLS/RTP/SAVPF with rtcp-mux, as a WebRTC gateway is
// configured. trust-address makes rtpengine use the SDP's addresses rather
// than the ng message's source.
var (
	ngOffer = rtpengine.Dict{
		"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": []any{"demux"},
		"flags": []any{"trust-address"}, "replace": []any{"origin", "session-connection"},
	}
	ngAnswer = rtpengine.Dict{
		"ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF", "rtcp-mux": []any{"require"},
		"flags": []any{"trust-address"}, "replace": []any{"origin", "session-connection"},
	}
)

func (r *rtpengineRelay) open(ctx context.Context, k kind, s *session) error {
	if k.legs != legsWebRTC {
		return errors.New("rtpengine baseline relays WebRTC <-> plain only")
	}
	h := r.h
	plain, err := h.plainEndpoint(false, s)
	if err != nil {
		return err
	}
	cep, err := h.endpoint(s)
	if err != nil {
		return err
	}
	leg := webrtcclient.NewLeg(cep, h.ident)
	s.leg = leg
	s.created = h.engine.Now()
	toPlain, err := r.d.Offer(ctx, s.id, "browser", browserOffer(h, leg), ngOffer)
	if err != nil {
		return err
	}
	s.open = true
	plainSide, err := parseSDP(toPlain)
	if err != nil {
		return fmt.Errorf("rtpengine offer SDP: %w", err)
	}
	toBrowser, err := r.d.Answer(ctx, s.id, "browser", "pbx", plainAnswer(h, plain.Addr()), ngAnswer)
	if err != nil {
		return err
	}
	browserSide, err := parseSDP(toBrowser)
	if err != nil {
		return fmt.Errorf("rtpengine answer SDP: %w", err)
	}
	if browserSide.ufrag == "" || browserSide.fingerprint == "" {
		return fmt.Errorf("rtpengine answer lacks ICE or DTLS:\n%s", toBrowser)
	}
	if err := s.addFlows(h, cep, browserSide.addr, plain, plainSide.addr); err != nil {
		return err
	}
	keys, err := leg.Connect(ctx, webrtcclient.Remote{Addr: browserSide.addr, Ufrag: browserSide.ufrag, Pwd: browserSide.pwd,
		Fingerprint: browserSide.fingerprint, DTLSClient: browserSide.setup == "passive"}, k.profile)
	if err != nil {
		return err
	}
	s.handshake = keys.Handshake
	s.activate(h, keys.Enc, keys.Dec)
	return nil
}

func (r *rtpengineRelay) close(ctx context.Context, s *session) error {
	if !s.open {
		return nil
	}
	return r.d.Delete(ctx, s.id)
}

// rtpmap is the codec's a=rtpmap value.
func rtpmap(h *harness) string {
	if h.codec.Name == "opus" {
		return "opus/48000/2"
	}
	return fmt.Sprintf("%s/%d", h.codec.Name, h.codec.ClockRate)
}

// browserOffer is the client leg's offer, as a browser's looks once
// gathering completed (one host candidate, rtcp-mux, BUNDLE).
func browserOffer(h *harness, l *webrtcclient.Leg) string {
	a := l.Endpoint.Addr()
	pt := strconv.Itoa(int(h.codec.PT))
	return strings.Join([]string{
		"v=0", "o=- 1 1 IN IP4 " + a.Addr().String(), "s=-", "t=0 0", "a=group:BUNDLE 0",
		fmt.Sprintf("m=audio %d UDP/TLS/RTP/SAVPF %s", a.Port(), pt),
		"c=IN IP4 " + a.Addr().String(), "a=mid:0",
		"a=ice-ufrag:" + l.Ufrag, "a=ice-pwd:" + l.Pwd, "a=ice-options:trickle",
		"a=fingerprint:sha-256 " + h.ident.Fingerprint, "a=setup:actpass",
		"a=rtcp-mux", "a=sendrecv", "a=rtpmap:" + pt + " " + rtpmap(h),
		fmt.Sprintf("a=candidate:1 1 udp 2130706431 %s %d typ host", a.Addr(), a.Port()),
		"a=end-of-candidates", "",
	}, "\r\n")
}

// plainAnswer is the PBX's answer: RTP/AVP at the harness's plain socket.
func plainAnswer(h *harness, a netip.AddrPort) string {
	pt := strconv.Itoa(int(h.codec.PT))
	return strings.Join([]string{
		"v=0", "o=- 2 1 IN IP4 " + a.Addr().String(), "s=-", "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP %s", a.Port(), pt),
		"c=IN IP4 " + a.Addr().String(), "a=rtpmap:" + pt + " " + rtpmap(h), "a=sendrecv", "",
	}, "\r\n")
}

// sdpSide is what the harness needs of one SDP: the media address (the
// first host candidate if any, else c= and m=), ICE credentials,
// fingerprint and DTLS setup.
type sdpSide struct {
	addr                    netip.AddrPort
	ufrag, pwd, fingerprint string
	setup                   string
}

func parseSDP(s string) (*sdpSide, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return nil, err
	}
	if len(d.MediaDescriptions) == 0 {
		return nil, errors.New("no media section")
	}
	md := d.MediaDescriptions[0]
	var host string
	if md.ConnectionInformation != nil && md.ConnectionInformation.Address != nil {
		host = md.ConnectionInformation.Address.Address
	} else if d.ConnectionInformation != nil && d.ConnectionInformation.Address != nil {
		host = d.ConnectionInformation.Address.Address
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("connection address %q", host)
	}
	out := &sdpSide{addr: netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value))}
	get := func(k string) string {
		if v, ok := md.Attribute(k); ok {
			return v
		}
		v, _ := d.Attribute(k)
		return v
	}
	out.ufrag, out.pwd, out.setup = get("ice-ufrag"), get("ice-pwd"), get("setup")
	if fp := get("fingerprint"); fp != "" {
		if alg, v, ok := strings.Cut(fp, " "); ok && strings.EqualFold(alg, "sha-256") {
			out.fingerprint = v
		}
	}
	for _, a := range md.Attributes {
		if a.Key != "candidate" {
			continue
		}
		f := strings.Fields(a.Value)
		// foundation component transport priority address port typ type
		if len(f) >= 8 && f[1] == "1" && strings.EqualFold(f[2], "udp") && f[7] == "host" {
			if ip, err := netip.ParseAddr(f[4]); err == nil && ip.Is4() {
				p, _ := strconv.Atoi(f[5])
				out.addr = netip.AddrPortFrom(ip, uint16(p))
				break
			}
		}
	}
	return out, nil
}

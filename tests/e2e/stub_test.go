package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"golang.org/x/net/websocket"
)

// The stubs in this file stand in for strait so that the harness and the
// pages can be checked without it: an echo peer (pion/webrtc answering a
// browser's offer and sending back what it receives), a SIP-over-WebSocket
// registrar and echo service for JsSIP, and the HTTP call API for the web
// phone. They implement only what the harness tests use.

// echoPeer answers one WebRTC offer and echoes the audio it receives.
type echoPeer struct {
	pc      *webrtc.PeerConnection
	packets atomic.Int64

	mu  sync.Mutex
	pts map[uint8]int // packets received by payload type
}

func newEchoPeer(offer string) (*echoPeer, string, error) {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true) // everything is on 127.0.0.1
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, "", err
	}
	// RFC 4733 events, at Chromium's payload type, so that the browser may send DTMF.
	dtmf := webrtc.RTPCodecParameters{PayloadType: 126, RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}}
	if err := me.RegisterCodec(dtmf, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, "", err
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	p := &echoPeer{pc: pc, pts: map[uint8]int{}}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "echo")
	if err != nil {
		pc.Close()
		return nil, "", err
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			p.packets.Add(1)
			p.mu.Lock()
			p.pts[pkt.PayloadType]++
			p.mu.Unlock()
			track.WriteRTP(pkt)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		return nil, "", err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		pc.Close()
		return nil, "", err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	answer, err := p.answer()
	if err != nil {
		pc.Close()
		return nil, "", err
	}
	return p, answer, nil
}

// answer creates and applies an answer to the remote offer just set, with
// every candidate in it (no trickle).
func (p *echoPeer) answer() (string, error) {
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(a); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return "", errors.New("echo peer: ICE gathering did not complete")
	}
	return p.pc.LocalDescription().SDP, nil
}

// reoffer answers a new offer in the same session (hold, resume).
func (p *echoPeer) reoffer(offer string) (string, error) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	return p.answer()
}

func (p *echoPeer) payloadTypes() map[uint8]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint8]int, len(p.pts))
	for k, v := range p.pts {
		out[k] = v
	}
	return out
}

func (p *echoPeer) close() { p.pc.Close() }

// sipMessage is a parsed SIP request or response, just enough for the stub.
type sipMessage struct {
	start   string
	headers [][2]string // name as sent, value
	body    string
}

var compactHeaders = map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length", "c": "content-type"}

func parseSIP(text string) sipMessage {
	head, body, _ := strings.Cut(text, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	m := sipMessage{start: lines[0], body: body}
	for _, l := range lines[1:] {
		if name, value, ok := strings.Cut(l, ":"); ok {
			m.headers = append(m.headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		}
	}
	return m
}

func (m sipMessage) method() string {
	if strings.HasPrefix(m.start, "SIP/2.0") {
		return ""
	}
	method, _, _ := strings.Cut(m.start, " ")
	return method
}

func (m sipMessage) all(name string) []string {
	var out []string
	for _, h := range m.headers {
		n := strings.ToLower(h[0])
		if c, ok := compactHeaders[n]; ok {
			n = c
		}
		if n == name {
			out = append(out, h[1])
		}
	}
	return out
}

func (m sipMessage) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// response builds a response to req; toTag is added to To if it has none.
func response(req sipMessage, code int, reason, toTag string, extra []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.all("via") {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	to := req.get("to")
	if !strings.Contains(to, ";tag=") && toTag != "" {
		to += ";tag=" + toTag
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n", req.get("from"), to, req.get("call-id"), req.get("cseq"))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Server: strait-e2e-stub\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// sipStub is a SIP-over-WebSocket server (RFC 7118) that accepts every
// REGISTER and answers every INVITE with an echo peer.
type sipStub struct {
	mu       sync.Mutex
	peers    map[string]*echoPeer // by Call-ID
	requests map[string]int       // count by method
	infos    []string             // bodies of INFO requests
}

func newSIPStub() *sipStub {
	return &sipStub{peers: map[string]*echoPeer{}, requests: map[string]int{}}
}

func (s *sipStub) handler() http.Handler {
	return websocket.Server{
		Handshake: func(c *websocket.Config, r *http.Request) error {
			for _, p := range c.Protocol {
				if p == "sip" {
					c.Protocol = []string{"sip"}
					return nil
				}
			}
			return errors.New("no sip subprotocol offered")
		},
		Handler: s.serve,
	}
}

func (s *sipStub) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method]
}

func (s *sipStub) peer(callID string) *echoPeer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[callID]
}

func (s *sipStub) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, p := range s.peers {
		p.close()
		delete(s.peers, id)
	}
}

func (s *sipStub) serve(ws *websocket.Conn) {
	ws.PayloadType = websocket.TextFrame
	send := func(msg string) { websocket.Message.Send(ws, msg) }
	const contact = "Contact: <sip:stub@127.0.0.1;transport=ws>"
	for {
		var text string
		if err := websocket.Message.Receive(ws, &text); err != nil {
			return
		}
		req := parseSIP(text)
		method := req.method()
		if method == "" {
			continue // a response
		}
		s.mu.Lock()
		s.requests[method]++
		s.mu.Unlock()
		callID := req.get("call-id")
		switch method {
		case "REGISTER":
			send(response(req, 200, "OK", "reg", []string{"Contact: " + req.get("contact") + ";expires=600", "Expires: 600"}, ""))
		case "INVITE":
			send(response(req, 100, "Trying", "", nil, ""))
			var answer string
			var err error
			if p := s.peer(callID); p != nil {
				answer, err = p.reoffer(req.body)
			} else {
				var p *echoPeer
				p, answer, err = newEchoPeer(req.body)
				if err == nil {
					s.mu.Lock()
					s.peers[callID] = p
					s.mu.Unlock()
				}
			}
			if err != nil {
				send(response(req, 488, "Not Acceptable Here", "stub", []string{"Warning: 399 stub \"" + err.Error() + "\""}, ""))
				continue
			}
			send(response(req, 200, "OK", "stub", []string{contact, "Content-Type: application/sdp"}, answer))
		case "ACK":
		case "BYE":
			if p := s.peer(callID); p != nil {
				p.close()
			}
			send(response(req, 200, "OK", "", nil, ""))
		case "INFO":
			s.mu.Lock()
			s.infos = append(s.infos, req.body)
			s.mu.Unlock()
			send(response(req, 200, "OK", "", nil, ""))
		default:
			send(response(req, 200, "OK", "", nil, ""))
		}
	}
}

// apiStub is the part of strait's HTTP call API the web phone uses, with an
// echo peer behind every call. Calls to "busy" are refused with 486.
type apiStub struct {
	mu    sync.Mutex
	next  int
	calls map[string]*stubCall
	dtmf  []string
	log   []string // "METHOD path" of every request
}

type stubCall struct {
	to    string
	peer  *echoPeer
	ended chan string // receives the reason once, when the call ends
	once  sync.Once
}

func (c *stubCall) end(reason string) {
	c.once.Do(func() {
		c.peer.close()
		c.ended <- reason
		close(c.ended)
	})
}

func newAPIStub() *apiStub { return &apiStub{calls: map[string]*stubCall{}} }

func (a *apiStub) call(id string) *stubCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

func (a *apiStub) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.log...)
}

func (a *apiStub) digits() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.dtmf, "")
}

func (a *apiStub) closeAll() {
	a.mu.Lock()
	calls := a.calls
	a.calls = map[string]*stubCall{}
	a.mu.Unlock()
	for _, c := range calls {
		c.end("shutdown")
	}
}

// hangupRemote ends a call from the far side, as a BYE from the PBX would.
func (a *apiStub) hangupRemote(id string) bool {
	a.mu.Lock()
	c := a.calls[id]
	delete(a.calls, id)
	a.mu.Unlock()
	if c != nil {
		c.end("remote hung up")
	}
	return c != nil
}

func (a *apiStub) handler() http.Handler {
	mux := http.NewServeMux()
	jsonReply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /v1/calls", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ To, Offer string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.To == "" || req.Offer == "" {
			jsonReply(w, http.StatusBadRequest, map[string]string{"error": "to and offer are required"})
			return
		}
		if req.To == "busy" {
			jsonReply(w, 486, map[string]string{"error": "busy here"})
			return
		}
		p, answer, err := newEchoPeer(req.Offer)
		if err != nil {
			jsonReply(w, 488, map[string]string{"error": err.Error()})
			return
		}
		a.mu.Lock()
		a.next++
		id := fmt.Sprintf("c%d", a.next)
		a.calls[id] = &stubCall{to: req.To, peer: p, ended: make(chan string, 1)}
		a.mu.Unlock()
		jsonReply(w, http.StatusCreated, map[string]string{"id": id, "answer": answer})
	})
	mux.HandleFunc("GET /v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		c := a.call(r.PathValue("id"))
		if c == nil {
			jsonReply(w, http.StatusNotFound, map[string]string{"error": "no such call"})
			return
		}
		jsonReply(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "to": c.to, "state": "answered"})
	})
	mux.HandleFunc("DELETE /v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		c := a.calls[r.PathValue("id")]
		delete(a.calls, r.PathValue("id"))
		a.mu.Unlock()
		if c == nil {
			jsonReply(w, http.StatusNotFound, map[string]string{"error": "no such call"})
			return
		}
		c.end("hung up by the API")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/calls/{id}/dtmf", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Digits string }
		json.NewDecoder(r.Body).Decode(&req)
		if a.call(r.PathValue("id")) == nil {
			jsonReply(w, http.StatusNotFound, map[string]string{"error": "no such call"})
			return
		}
		a.mu.Lock()
		a.dtmf = append(a.dtmf, req.Digits)
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/calls/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		c := a.call(r.PathValue("id"))
		if c == nil {
			jsonReply(w, http.StatusNotFound, map[string]string{"error": "no such call"})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		fmt.Fprintf(w, "event: answered\ndata: {\"call\":%q,\"state\":\"answered\"}\n\n", r.PathValue("id"))
		fl.Flush()
		select {
		case reason := <-c.ended:
			fmt.Fprintf(w, "event: ended\ndata: {\"call\":%q,\"reason\":%q}\n\n", r.PathValue("id"), reason)
			fl.Flush()
		case <-r.Context().Done():
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.log = append(a.log, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

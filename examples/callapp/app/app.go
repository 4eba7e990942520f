// Package app is a small web app that answers calls Strait routes to it
// (strait --app NAME:PATTERN:SECRET_FILE:URL): it checks each webhook's
// signature, answers the call's WebRTC offer with a pion PeerConnection
// right in the webhook's response, and echoes the caller's audio or
// plays a tone.
package app

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Mode is what the app does with a call.
type Mode string

// Modes.
const (
	// Echo sends the caller's audio back.
	Echo Mode = "echo"
	// Tone plays a 440 Hz tone (G.711 only; other codecs get the echo).
	Tone Mode = "tone"
)

// Incoming is the webhook's body (type "call.incoming"), as Strait's
// README documents it.
type Incoming struct {
	Type     string    `json:"type"`
	Delivery string    `json:"delivery"`
	Call     string    `json:"call"`
	App      string    `json:"app"`
	Caller   string    `json:"caller"`
	Callee   string    `json:"callee"`
	Expires  time.Time `json:"expires"`
	Offer    string    `json:"offer"`
}

// Handler answers Strait's webhooks. Create with New; safe for
// concurrent use.
type Handler struct {
	verifier *Verifier
	mode     Mode
	api      *webrtc.API
	log      *slog.Logger

	mu    sync.Mutex
	calls map[string]*webrtc.PeerConnection // by call id; guarded by mu
}

// Options configure a Handler.
type Options struct {
	// Secret is the webhook secret shared with Strait.
	Secret []byte
	// Mode is Echo (default) or Tone.
	Mode Mode
	// LoopbackOnly gathers ICE candidates on loopback only (Strait on the
	// same host, as in tests); otherwise every interface, loopback too.
	LoopbackOnly bool
	// Log is the logger (nil: slog.Default()).
	Log *slog.Logger
}

// New returns a Handler.
func New(o Options) *Handler {
	if o.Mode == "" {
		o.Mode = Echo
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if o.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err) // pion's own table
	}
	return &Handler{verifier: &Verifier{Secret: o.Secret}, mode: o.Mode, log: o.Log,
		api:   webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)),
		calls: map[string]*webrtc.PeerConnection{}}
}

// Verifier returns the handler's signature checker (tests move its clock).
func (h *Handler) Verifier() *Verifier { return h.verifier }

// maxBody bounds a webhook's body.
const maxBody = 64 << 10

// ServeHTTP answers one webhook: 401 for a bad signature, 409 for a
// replay, 400 for a body that is not a call, 200 application/sdp with
// the answer, 503 when no answer could be made (Strait retries).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	delivery, err := h.verifier.Verify(r, body)
	switch {
	case errors.Is(err, ErrReplay):
		h.log.Warn("webhook replayed", "delivery", r.Header.Get("Strait-Delivery"))
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		h.log.Warn("webhook refused", "err", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var in Incoming
	if err := json.Unmarshal(body, &in); err != nil || in.Type != "call.incoming" || in.Call == "" || in.Offer == "" {
		http.Error(w, "not a call.incoming webhook", http.StatusBadRequest)
		return
	}
	answer, err := h.answer(in)
	if err != nil {
		h.verifier.Release(delivery) // Strait's retry is welcome
		h.log.Error("no answer", "call", in.Call, "err", err)
		http.Error(w, "no answer: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.log.Info("answered", "call", in.Call, "caller", in.Caller, "callee", in.Callee, "mode", h.mode)
	w.Header().Set("Content-Type", "application/sdp")
	io.WriteString(w, answer)
}

// answer makes a PeerConnection for the call's offer and returns its
// complete answer.
func (h *Handler) answer(in Incoming) (string, error) {
	pc, err := h.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
		}
	}()
	codec := audioCodec(in.Offer)
	if codec.MimeType == "" {
		return "", errors.New("the offer has no audio codec this app plays")
	}
	stop := make(chan struct{})
	var once sync.Once
	end := func() {
		once.Do(func() {
			close(stop)
			pc.Close()
			h.mu.Lock()
			delete(h.calls, in.Call)
			h.mu.Unlock()
		})
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		h.log.Info("call media", "call", in.Call, "state", s.String())
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateDisconnected {
			go end()
		}
	})
	tone := h.mode == Tone && (codec.MimeType == webrtc.MimeTypePCMU || codec.MimeType == webrtc.MimeTypePCMA)
	if tone {
		track, err := webrtc.NewTrackLocalStaticSample(codec, "audio", "tone")
		if err != nil {
			return "", err
		}
		if _, err := pc.AddTrack(track); err != nil {
			return "", err
		}
		pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := remote.Read(buf); err != nil {
					return
				}
			}
		})
		go func() {
			<-connected(pc, stop)
			playTone(track, codec.MimeType == webrtc.MimeTypePCMA, stop)
		}()
	} else {
		track, err := webrtc.NewTrackLocalStaticRTP(codec, "audio", "echo")
		if err != nil {
			return "", err
		}
		if _, err := pc.AddTrack(track); err != nil {
			return "", err
		}
		pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				pkt, _, err := remote.ReadRTP()
				if err != nil {
					return
				}
				if pkt.PayloadType != uint8(remote.PayloadType()) {
					continue // telephone-events and comfort noise are not echoed
				}
				if err := track.WriteRTP(pkt); err != nil {
					return
				}
			}
		})
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: in.Offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return "", errors.New("ICE gathering did not complete")
	}
	h.mu.Lock()
	h.calls[in.Call] = pc
	h.mu.Unlock()
	ok = true
	return pc.LocalDescription().SDP, nil
}

// connected returns a channel closed once pc is connected (or stop).
func connected(pc *webrtc.PeerConnection, stop <-chan struct{}) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return ch
}

// audioCodec picks the first codec of the offer's audio section that the
// app can send: what the caller's side prefers.
func audioCodec(offer string) webrtc.RTPCodecCapability {
	known := map[string]webrtc.RTPCodecCapability{
		"opus/48000": {MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		"pcmu/8000":  {MimeType: webrtc.MimeTypePCMU, ClockRate: 8000},
		"pcma/8000":  {MimeType: webrtc.MimeTypePCMA, ClockRate: 8000},
		"g722/8000":  {MimeType: webrtc.MimeTypeG722, ClockRate: 8000},
	}
	var order []string // payload types in the m= line's order
	rtpmap := map[string]string{}
	inAudio := false
	for _, line := range strings.Split(offer, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line)
			inAudio = strings.HasPrefix(line, "m=audio") && len(order) == 0
			if inAudio && len(f) > 3 {
				order = f[3:]
			}
		case inAudio && strings.HasPrefix(line, "a=rtpmap:"):
			pt, enc, _ := strings.Cut(strings.TrimPrefix(line, "a=rtpmap:"), " ")
			enc = strings.ToLower(enc)
			if i := strings.Count(enc, "/"); i == 2 {
				enc = enc[:strings.LastIndexByte(enc, '/')]
			}
			rtpmap[pt] = enc
		}
	}
	for _, pt := range order {
		if c, ok := known[rtpmap[pt]]; ok {
			return c
		}
	}
	return webrtc.RTPCodecCapability{}
}

// Calls returns how many calls have media open.
func (h *Handler) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

// Close ends every call's media.
func (h *Handler) Close() {
	h.mu.Lock()
	pcs := make([]*webrtc.PeerConnection, 0, len(h.calls))
	for _, pc := range h.calls {
		pcs = append(pcs, pc)
	}
	h.mu.Unlock()
	for _, pc := range pcs {
		pc.Close()
	}
}

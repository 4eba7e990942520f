// Package messaging carries instant messages to Strait's users on the
// HTTP API: a message to a user reaches every API listener of that user
// (GET /v1/events/messages) on every control plane, through the state
// store's message bus. Messages between the API and SIP (MESSAGE, RFC
// 3428) are bridged by package api (API to SIP) and package b2bua's
// OnMessage hook (SIP to API). Messages for a user with no listener and
// no reachable registration are kept by the Mailbox (mailbox.go) until the
// user comes online. A message goes to its recipient once: either live to
// its listeners or through the mailbox, never both (claim.go).
package messaging

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/strait-sbc/strait/controlplane/state"
)

// channel is the store's bus channel for messages.
const channel = "strait.messages"

// MaxText bounds a message's text, in bytes (a SIP MESSAGE's body should
// stay well under a UDP datagram; RFC 3428 section 8 says 1300 bytes on
// UDP, and larger messages go as TCP or WebSocket would).
const MaxText = 4096

// TextType is the media type of the messages the API sends.
const TextType = "text/plain;charset=UTF-8"

// listenQueue is a listener's buffer; a listener further behind loses
// messages (counted).
const listenQueue = 64

// resubscribe is the pause before subscribing to the bus again.
const resubscribe = time.Second

// publishTimeout bounds the publication of a message that came over SIP.
const publishTimeout = 2 * time.Second

// busMessage is a message on the bus: the message itself (old readers
// take it as a Message and ignore the rest) and whether its sender may
// keep it in the mailbox, in which case listeners claim it before they
// deliver it (claim.go).
type busMessage struct {
	Message
	Keep bool `json:"keep,omitempty"`
}

// Message is one instant message.
type Message struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	ContentType string    `json:"content_type"`
	Text        string    `json:"text"`
	Time        time.Time `json:"time"`
	// Via says where the message came from: "api" or "sip".
	Via string `json:"via"`
}

// CheckText validates a message's text.
func CheckText(text string) error {
	switch {
	case text == "":
		return errors.New("text: empty")
	case len(text) > MaxText:
		return fmt.Errorf("text: at most %d bytes", MaxText)
	case !utf8.ValidString(text):
		return errors.New("text: not UTF-8")
	}
	return nil
}

// NewID returns a new message id.
func NewID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Config configures a Hub.
type Config struct {
	// Store carries the messages between control planes. Required.
	Store state.Store
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Hub delivers messages to the API listeners of this process. It is safe
// for concurrent use.
type Hub struct {
	cfg    Config // frozen
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex // guards listeners
	listeners map[string]map[chan Message]struct{}
	lost      atomic.Uint64
	yielded   atomic.Uint64
}

// New starts a Hub; Close stops it.
func New(cfg Config) *Hub {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{cfg: cfg, cancel: cancel, done: make(chan struct{}), listeners: map[string]map[chan Message]struct{}{}}
	// The first subscription is made here, so that a change made once
	// New returned is heard; listen renews it if the bus drops it.
	first, err := cfg.Store.Subscribe(ctx, channel)
	if err != nil {
		cfg.Log.Warn("bus subscription failed", "channel", channel, "err", err)
	}
	go h.listen(ctx, first)
	return h
}

// Close stops the Hub and ends its listeners.
func (h *Hub) Close() {
	h.cancel()
	<-h.done
	h.mu.Lock()
	for _, set := range h.listeners {
		for ch := range set {
			close(ch)
		}
	}
	h.listeners = map[string]map[chan Message]struct{}{}
	h.mu.Unlock()
}

func (h *Hub) listen(ctx context.Context, ch <-chan []byte) {
	defer close(h.done)
	for ctx.Err() == nil {
		var err error
		if ch == nil {
			ch, err = h.cfg.Store.Subscribe(ctx, channel)
		}
		if err != nil {
			h.cfg.Log.Warn("messaging: bus subscription failed", "err", err)
		} else {
			for b := range ch {
				var m busMessage
				if json.Unmarshal(b, &m) == nil {
					h.deliver(ctx, m)
				}
			}
		}
		ch = nil // dropped: subscribe again
		select {
		case <-ctx.Done():
		case <-time.After(resubscribe):
		}
	}
}

// deliver hands m to its recipient's listeners here. A message its sender
// may keep is claimed for live delivery first (no lock held meanwhile):
// when the sender's mailbox claimed it first, it is left to the mailbox,
// which hands it to these listeners from there (Mailbox.handOver). When
// the store cannot say, m is delivered: a duplicate beats a loss.
func (h *Hub) deliver(ctx context.Context, bm busMessage) {
	m := bm.Message
	if bm.Keep && h.Listening(m.To) {
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		live, err := claim(cctx, h.cfg.Store, m.ID, claimLive)
		cancel()
		if err != nil {
			h.cfg.Log.Warn("messaging: delivery not claimed; delivered all the same", "id", m.ID, "err", err)
		} else if !live {
			h.yielded.Add(1)
			return
		}
	}
	h.local(m)
}

// local hands m to its recipient's listeners on this process.
func (h *Hub) local(m Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.listeners[m.To] {
		select {
		case ch <- m:
		default:
			h.lost.Add(1)
		}
	}
}

// Lost counts messages listeners were too slow to take.
func (h *Hub) Lost() uint64 { return h.lost.Load() }

// Yielded counts messages not delivered live here because the sender's
// mailbox had claimed them (they come from the mailbox instead).
func (h *Hub) Yielded() uint64 { return h.yielded.Load() }

// Listen returns a channel of the messages to user from now on, and the
// function that stops it.
func (h *Hub) Listen(user string) (<-chan Message, func()) {
	return h.ListenWith(user, nil)
}

// ListenWith is Listen with the channel holding kept first: the messages
// kept for user while offline (Mailbox.Take) come before the new ones.
func (h *Hub) ListenWith(user string, kept []Message) (<-chan Message, func()) {
	ch := make(chan Message, listenQueue+len(kept))
	for _, m := range kept {
		ch <- m
	}
	h.mu.Lock()
	if h.listeners[user] == nil {
		h.listeners[user] = map[chan Message]struct{}{}
	}
	h.listeners[user][ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if _, ok := h.listeners[user][ch]; ok {
				delete(h.listeners[user], ch)
				if len(h.listeners[user]) == 0 {
					delete(h.listeners, user)
				}
				close(ch)
			}
			h.mu.Unlock()
		})
	}
}

// Listening reports whether user has a listener on this process.
func (h *Hub) Listening(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.listeners[user]) > 0
}

// Send delivers m to its recipient's listeners on every control plane.
// keep says that the sender may keep m in the mailbox if nobody takes it
// (Mailbox.Put): listeners then claim m before they deliver it, so that
// it is delivered either live or from the mailbox, once.
func (h *Hub) Send(ctx context.Context, m Message, keep bool) error {
	b, err := json.Marshal(busMessage{Message: m, Keep: keep})
	if err != nil {
		return err
	}
	return h.cfg.Store.Publish(ctx, channel, b)
}

// FromSIP is b2bua's OnMessage hook: a MESSAGE from a SIP user goes to
// the recipient's API listeners when its body is text. id is the
// message's id, the same b2bua gives the Offline hook if nobody takes the
// MESSAGE (so that a copy kept there and one delivered live are known to
// be one message). It does not block (the publication runs on a goroutine
// of its own, bounded in time) and reports whether the recipient listens
// on this process.
func (h *Hub) FromSIP(id, from, to, contentType string, body []byte) bool {
	mt, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(contentType)), ";")
	if mt != "text/plain" || CheckText(string(body)) != nil {
		return false // is-composing, CPIM, binary: not for the API
	}
	m := Message{ID: id, From: from, To: to, ContentType: contentType, Text: string(body), Time: time.Now().UTC(), Via: "sip"}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		defer cancel()
		if err := h.Send(ctx, m, true); err != nil {
			h.cfg.Log.Warn("messaging: message from SIP not delivered to the API", "to", to, "err", err)
		}
	}()
	return h.Listening(to)
}

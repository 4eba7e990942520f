// Package messaging carries instant messages to Strait's users on the
// HTTP API: a message to a user reaches every API listener of that user
// (GET /v1/events/messages) on every control plane, through the state
// store's message bus. Messages between the API and SIP (MESSAGE, RFC
// 3428) are bridged by package api (API to SIP) and package b2bua's
// OnMessage hook (SIP to API). Messages for a user with no listener and
// no reachable registration are kept by the Mailbox (mailbox.go) until the
// user comes online.
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
				var m Message
				if json.Unmarshal(b, &m) == nil {
					h.deliver(m)
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

func (h *Hub) deliver(m Message) {
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
func (h *Hub) Send(ctx context.Context, m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return h.cfg.Store.Publish(ctx, channel, b)
}

// FromSIP is b2bua's OnMessage hook: a MESSAGE from a SIP user goes to
// the recipient's API listeners when its body is text. It does not block
// (the publication runs on a goroutine of its own, bounded in time) and
// reports whether the recipient listens on this process.
func (h *Hub) FromSIP(from, to, contentType string, body []byte) bool {
	mt, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(contentType)), ";")
	if mt != "text/plain" || CheckText(string(body)) != nil {
		return false // is-composing, CPIM, binary: not for the API
	}
	m := Message{ID: NewID(), From: from, To: to, ContentType: contentType, Text: string(body), Time: time.Now().UTC(), Via: "sip"}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		defer cancel()
		if err := h.Send(ctx, m); err != nil {
			h.cfg.Log.Warn("messaging: message from SIP not delivered to the API", "to", to, "err", err)
		}
	}()
	return h.Listening(to)
}

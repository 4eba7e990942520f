package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/presence"
)

// deliverTimeout bounds the hand-over of one user's kept messages to a
// browser that registered (each MESSAGE is bounded by b2bua too).
const deliverTimeout = time.Minute

// offlineMail wires the mailbox (messages kept for offline users) to the
// SIP side: MESSAGEs nobody took are kept, and a user's kept messages go
// to the browser that registers.
type offlineMail struct {
	s      *Server // frozen
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // hand-overs in progress
}

func newOfflineMail(s *Server) *offlineMail {
	ctx, cancel := context.WithCancel(context.Background())
	return &offlineMail{s: s, ctx: ctx, cancel: cancel}
}

// knownForMail says whether messages are kept for user: the standalone users and
// the address book's.
func (s *Server) knownForMail(user string) bool {
	if s.digest != nil && s.digest.Known(user) {
		return true
	}
	return slices.ContainsFunc(s.contacts, func(c presence.Entry) bool { return c.User == user })
}

// keep is b2bua's Offline hook: a text MESSAGE nobody took is kept (202),
// refused when the user's mailbox or the sender's share of the mailbox is
// full (480), answered 200 when an API listener on another control plane
// took it meanwhile (the id is the one messaging.Hub.FromSIP published),
// else left to the routing's answer.
func (o *offlineMail) keep(id, from, to, contentType string, body []byte) int {
	mt, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(contentType)), ";")
	if o.s.Mailbox == nil || mt != "text/plain" || messaging.CheckText(string(body)) != nil {
		return 0 // is-composing and other non-text bodies are not kept
	}
	m := messaging.Message{ID: id, From: from, To: to, ContentType: contentType, Text: string(body),
		Time: time.Now().UTC(), Via: "sip"}
	ctx, cancel := context.WithTimeout(o.ctx, 2*time.Second)
	defer cancel()
	switch err := o.s.Mailbox.Put(ctx, m); {
	case err == nil:
		o.s.log.Info("message kept for an offline user", "id", m.ID, "from", from, "to", to)
		return 202
	case errors.Is(err, messaging.ErrTaken):
		return 200
	case errors.Is(err, messaging.ErrMailboxFull):
		o.s.log.Info("message refused: mailbox full", "id", m.ID, "from", from, "to", to, "err", err)
		return 480
	case errors.Is(err, messaging.ErrUnknownUser):
		return 0
	default:
		o.s.log.Warn("message not kept", "to", to, "err", err)
		return 0
	}
}

// registered is b2bua's OnRegistered hook: the messages kept for user go
// to its browser, in order, each removed once the browser answered 2xx;
// the first that fails leaves the rest for next time.
func (o *offlineMail) registered(user string) {
	if o.s.Mailbox == nil || o.s.Mailbox.Waiting(user) == 0 || o.ctx.Err() != nil {
		return
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		ctx, cancel := context.WithTimeout(o.ctx, deliverTimeout)
		defer cancel()
		msgs, done := o.s.Mailbox.Take(ctx, user)
		defer done()
		for _, m := range msgs {
			code, err := o.s.Engine.DeliverMessage(ctx, m.From, m.To, m.ContentType, []byte(m.Text), m.Time)
			if err != nil || code < 200 || code > 299 {
				o.s.log.Info("kept message not delivered yet", "id", m.ID, "to", user, "sip_status", code, "err", err)
				return
			}
			if err := o.s.Mailbox.Delivered(ctx, m); err != nil {
				o.s.log.Warn("delivered message not removed", "id", m.ID, "err", err)
			}
			o.s.log.Info("kept message delivered", "id", m.ID, "to", user, "via", "sip")
		}
	}()
}

// close waits for the hand-overs in progress to end.
func (o *offlineMail) close() {
	o.cancel()
	o.wg.Wait()
}

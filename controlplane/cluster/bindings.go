package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// Registrations are shared between the members (registrar.Registry.Share):
// each change a member makes to the bindings it holds is published on the
// store's channel "bindings", and every member applies the others'. The
// messages are the registrar's; this file only carries them.

// bindingsChannel is the channel binding changes go out on.
const bindingsChannel = "bindings"

// bindingsQueue bounds the changes waiting to be published: a store that
// does not keep up loses changes (the next refresh of each binding sends
// it again) rather than holding up REGISTER.
const bindingsQueue = 1024

// Bindings publishes this member's binding changes and applies the
// others'. It is safe for concurrent use.
type Bindings struct {
	// Frozen after ShareBindings.
	st     state.Store
	log    *slog.Logger
	q      chan []byte
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// resyncRetry is how long a catch-up that could not read the store waits
// before it tries again.
const resyncRetry = time.Second

// ShareBindings subscribes apply to the other members' binding changes
// (apply runs on one goroutine, in order) and returns the publisher of
// this member's (Publish). When the subscription was lost and made again
// (state.Store's gap mark: what the peers published meanwhile is lost),
// resync gets the store's binding records on that goroutine, to catch up
// (a store that does not answer is asked again every resyncRetry). It
// serves until Close.
func ShareBindings(ctx context.Context, st state.Store, apply func(msg []byte), resync func(recs map[string][]byte) int,
	log *slog.Logger) (*Bindings, error) {
	if log == nil {
		log = slog.Default()
	}
	sctx, cancel := context.WithCancel(context.Background())
	// The subscription lives as long as the sharing, not ctx.
	stop := context.AfterFunc(ctx, cancel)
	in, err := st.Subscribe(sctx, bindingsChannel)
	stop()
	if err != nil {
		cancel()
		return nil, err
	}
	b := &Bindings{st: st, log: log, q: make(chan []byte, bindingsQueue), cancel: cancel}
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		var retry <-chan time.Time // set while a catch-up waits to be tried again
		catchUp := func() {
			lctx, lcancel := context.WithTimeout(sctx, opTimeout)
			recs, err := st.Load(lctx, state.Bindings)
			lcancel()
			if err != nil {
				b.log.Warn("cluster: registrations not read again after the subscription to the peers' changes was lost; retrying", "err", err)
				retry = time.After(resyncRetry)
				return
			}
			retry = nil
			n := resync(recs)
			b.log.Info("cluster: registrations read again after the subscription to the peers' changes was lost", "records", len(recs), "applied", n)
		}
		for {
			select {
			case <-sctx.Done():
				return
			case <-retry:
				catchUp()
			case msg, ok := <-in:
				if !ok {
					return
				}
				if msg == nil {
					catchUp()
					continue
				}
				apply(msg)
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		for {
			select {
			case <-sctx.Done():
				return
			case msg := <-b.q:
				pctx, pcancel := context.WithTimeout(sctx, opTimeout)
				if err := st.Publish(pctx, bindingsChannel, msg); err != nil {
					b.log.Warn("cluster: a registration change not published to the peers", "err", err)
				}
				pcancel()
			}
		}
	}()
	return b, nil
}

// Publish queues a change for the other members; it never blocks.
func (b *Bindings) Publish(msg []byte) {
	select {
	case b.q <- msg:
	default:
		b.log.Warn("cluster: registration changes queue full; one not published")
	}
}

// Close stops publishing and applying.
func (b *Bindings) Close() {
	b.cancel()
	b.wg.Wait()
}

// LeaseHeld reports whether the member id holds a live lease, asking the
// store.
func LeaseHeld(ctx context.Context, st state.Store, id string) (bool, error) {
	_, ok, err := st.Get(ctx, state.Leases, leaseName(id))
	return ok, err
}

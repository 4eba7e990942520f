package messaging

import (
	"context"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// A message goes to its recipient once. Its sender publishes it on the bus
// (Hub.Send) and, when nobody took it, keeps it in the mailbox
// (Mailbox.Put); with several control planes on one store the recipient's
// listener may be on another one, which the sender cannot see. So each
// message that may be kept is claimed, by id, with the store's lease
// (Store.Lease: SET NX with an expiry in one Redis script, in-process for
// the embedded and memory stores), and whoever comes first decides:
//
//   - a control plane delivering it live claims it "live"; several
//     control planes with listeners of the recipient all deliver it (the
//     claim is taken when free or already "live");
//   - the mailbox keeping it claims it "stored" (Mailbox.Put fails with
//     ErrTaken when it was delivered live: the sender is told
//     "delivered"); a listener that comes later leaves it to the mailbox,
//     which hands it to the listeners at once (Mailbox.handOver).
//
// Chosen over making the mailbox the single path (every message written
// to the store and read back by the listener's control plane) because a
// live message then costs one store round trip per control plane with a
// listener, not a write, a read and a delete, and over a Lua script that
// deletes the mailbox copy on live delivery because the copy may not be
// written yet when the live delivery happens (the sender keeps it only
// after its SIP attempt failed).

// Owners of a message's claim.
const (
	claimLive   = "live"
	claimStored = "stored"
)

// claimTTL is how long a claim decides: longer than the sender's SIP
// attempt (b2bua bounds a MESSAGE to 16 s) and the bus's delivery, with
// room to spare; then the claim expires on its own.
const claimTTL = 5 * time.Minute

// claimTimeout bounds one claim (a store round trip).
const claimTimeout = 2 * time.Second

// claimName is the lease of message id.
func claimName(id string) string { return "message/" + id }

// claim takes message id's delivery for how (claimLive or claimStored)
// and reports whether it is how's: free, or already how's.
func claim(ctx context.Context, st state.Store, id, how string) (bool, error) {
	return st.Lease(ctx, claimName(id), how, claimTTL)
}

// unclaim gives a claim up (a message that was claimed for the mailbox
// but could not be kept).
func unclaim(ctx context.Context, st state.Store, id, how string) error {
	return st.Release(ctx, claimName(id), how)
}

package b2bua

import (
	"errors"

	"github.com/emiago/sipgo/sip"
)

// stateRetryAfter is what a call refused while the state store is down is
// told to wait (seconds): the Writer retries at least this often.
const stateRetryAfter = "5"

// errStateDown refuses a new call while the state store does not answer:
// a call Strait could not write through would not survive a restart, and
// other control planes could not see it.
var errStateDown = sipError(503, "Service Unavailable: state store down", errors.New("the state store does not answer"))

// admitState refuses new calls while the state store is down (counted as
// refused with reason "state"); calls in progress go on, their changes
// kept by the Writer until the store is back.
func (e *Engine) admitState() error {
	if e.cfg.State == nil || e.cfg.State.Up() {
		return nil
	}
	e.cfg.Metrics.CallRefused("state")
	return errStateDown
}

// stateRefusalHeaders are the headers of a refusal for a store that is
// down.
func stateRefusalHeaders() []sip.Header {
	return []sip.Header{sip.NewHeader("Retry-After", stateRetryAfter)}
}

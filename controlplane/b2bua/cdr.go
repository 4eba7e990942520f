package b2bua

import (
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// record is the call's CDR, ended now with cause and reason. Loop only.
func (c *Call) record(cause int, reason string) *cdr.Record {
	r := &cdr.Record{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, Start: c.start,
		End: time.Now(), Cause: cause, Reason: reason}
	if !c.answer.IsZero() {
		t := c.answer
		r.Answer = &t
		r.Duration = r.End.Sub(t).Seconds()
	}
	return r
}

// legMedia is the CDR's media section from a deleted session's final
// state (nil when the call never had one).
func legMedia(s *pb.Session) []cdr.LegMedia { return cdr.MediaOf(s) }

package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
)

// Origin is an o= line (RFC 8866 section 5.2).
//
// A parsed [Description] carries its author's origin. For the descriptions
// Strait writes, the caller keeps one Origin per leg and hands a pointer to
// every builder: RFC 3264 section 8 wants the username, session id and
// address to stay the same for the whole dialog, and the version to go up
// by one whenever the description changes (and only then: a re-sent,
// unchanged description keeps its version). The zero value is ready to use:
// the first build picks a random session id and Strait's address. A build
// counts as sent: build again only what is sent, or the version skips.
type Origin struct {
	// Username is "-" unless set.
	Username string
	// SessionID is chosen at random on first use unless set.
	SessionID uint64
	// Version is the session version of the last description written.
	Version uint64
	// Address is the unicast address; the first description's local
	// address unless set.
	Address string

	// last is a digest of the last description written with this origin,
	// to tell a changed description from a re-sent one.
	last uint64
}

// sessionIDBits: JSEP (RFC 8829 section 5.2.1) wants a 63-bit random session
// id with the top bit clear, which also keeps PBXs that parse it as a signed
// 64-bit number happy.
const sessionIDBits = 63

// stamp fills in d.Origin for a description Strait is about to send, bumping
// the version when d differs from the last one stamped. localAddr is used
// when o has no address yet.
func (o *Origin) stamp(d *Description, localAddr string) error {
	if o.Username == "" {
		o.Username = "-"
	}
	if o.SessionID == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		o.SessionID = binary.BigEndian.Uint64(b[:]) >> (64 - sessionIDBits)
		if o.SessionID == 0 {
			o.SessionID = 1
		}
	}
	if o.Address == "" {
		o.Address = localAddr
	}
	// Digest everything but the origin line.
	d.Origin = Origin{Username: "-", Address: "0.0.0.0"}
	body, err := d.Marshal()
	if err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write(body)
	if sum := h.Sum64(); o.Version == 0 || sum != o.last {
		o.Version++
		o.last = sum
	}
	d.Origin = Origin{Username: o.Username, SessionID: o.SessionID, Version: o.Version, Address: o.Address}
	return nil
}

// Package relay is the dataplane's packet engine: the packet workers, the
// sockets they serve, and the sessions, legs and streams whose media they
// relay.
//
// # Ownership and concurrency
//
// An Engine runs one worker goroutine per core. Each worker owns a
// batchconn.Loop (io_uring where the kernel allows it: one io_uring_enter
// per round submits the round's sends and waits for the next datagrams of
// all its sockets; else recvmmsg/sendmmsg with an epoll set parked in the
// netpoller; Config.IO chooses), one SO_REUSEPORT socket of every
// shared port (WebRTC ports and shared plain ports), the port-per-stream
// sockets of the sessions assigned to it, a receive batch and a send batch,
// and its lookup tables: local ICE ufrag -> leg, (shared port, peer address)
// -> leg for latched WebRTC paths, and (shared port, peer address) -> stream
// for shared plain ports. Only the worker reads or writes its tables, so the
// packet path takes no lock to find a leg; the control side changes them by
// queueing commands that the worker applies between batches (Engine methods
// wait for that where they must, e.g. before closing a socket).
//
// A session's negotiated configuration (codecs, payload-type maps,
// directions, SDP addresses) is an immutable snapshot behind an atomic
// pointer, replaced whole by UpdateSession: the packet path reads it with one
// atomic load. ICE credentials are immutable values behind an atomic pointer
// too, replaced and never changed in place. Latched addresses, the
// nominated ICE path and consent times are atomics.
//
// Creating, updating and deleting a session are one mechanism (change.go):
// the next state is built whole (configuration, credentials, keys, ports)
// without touching the session, so a refused request leaves it exactly as
// it was; then it is published in one step, and one function
// (tableCommands) turns what the workers' tables held for the session into
// what they must hold now. A session's mutex serialises its changes; the
// engine's mutex guards only the set of sessions, and is never held while
// a session's is. Lock order: Session.mu, then Engine.mu, a leg's
// dtlsState.mu or a worker's mu (for posting), never the reverse; no lock is
// held across network I/O.
//
// The SRTP contexts and the outbound stream state (sequence normalisation)
// of a leg are mutable per packet, and two workers can touch them: inbound
// state is used by the worker the kernel's reuseport hash sends the peer's
// flow to, outbound state by the worker that receives the other leg's media.
// Each direction of a leg is therefore guarded by its own mutex. In steady
// state every flow hashes to one worker, so these locks are uncontended (one
// atomic compare-and-swap each); they only matter during a path change, when
// without them two workers could corrupt an SRTP context.
//
// Each stream measures its media quality on the way (quality.go, package
// quality): the RTP it receives feeds RFC 3550 receiver statistics under a
// try-flag (one compare-and-swap, never a wait), and the RTCP relayed
// through it is read for sender and receiver reports before translation;
// the janitor samples both every QualityInterval into the call-long
// figures the API reports.
//
// # A packet's path
//
// See DESIGN.md: a worker takes a round's datagrams from its Loop,
// classifies each by its first byte (package demux), answers STUN itself (package
// icelite), queues DTLS to the leg's handshake goroutine (package dtlsleg),
// and for RTP/RTCP finds the leg, decrypts in place, maps the payload type,
// rewrites sequence/SSRC for the destination (package rewrite), encrypts in
// place into the buffer's tailroom and queues the datagram on the Loop,
// which sends the round's datagrams at the start of the next round.
package relay

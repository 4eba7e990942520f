// Package quality measures the media quality of an RTP stream as the relay
// sees it: the RTCP sender and receiver reports of RFC 3550 that the far
// ends exchange through the node ([ParseReports]), the node's own receiver
// statistics of the RTP it receives ([Receiver]: sequence gaps and jumps,
// late packets, the interarrival jitter of RFC 3550 appendix A.8), a
// round-trip time measured against the node's own clock from the LSR and
// DLSR fields of receiver reports ([SRLog]), and an estimated MOS from a
// simplified ITU-T G.107 E-model ([MOS]).
//
// [ParseReports], [Receiver.Update], [SRLog.Record] and [SRLog.RTT] run on
// the dataplane's packet path: they never allocate, lock or block. A
// Receiver has one writer at a time (its caller serialises Update) and any
// number of concurrent readers of [Receiver.Stats]; an SRLog may be written
// and read concurrently. [Log], which turns periodic samples into the
// min/avg/max figures and the bounded per-interval series a call detail
// record carries, is control-side code with a lock.
package quality

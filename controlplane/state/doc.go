// Package state keeps what the control plane needs to carry calls on after
// it restarts, and what several control planes must share: each answered
// call's two dialogs and negotiated media, registrations, digest nonce use,
// the secrets nonces are signed with, and (all in one) the dataplane
// sessions' keys.
//
// A [Store] is a small key-value interface with three backends, chosen by
// --state: an embedded bbolt file under --data-dir (the default; one
// process), Redis or Valkey (redis://, rediss://, Sentinel; several control
// planes), and memory (tests; nothing outlives the process). Records are
// grouped by [Kind]; each is an opaque byte string its owner encodes
// (package b2bua encodes calls, package registrar bindings).
//
// Writes go through a [Writer]: owners hand it each change as it happens
// (never per packet), it keeps the latest value per key and writes them
// in one batch every FlushInterval, so a call that is answered and then
// re-INVITEd within a batch costs one write, and a burst of calls costs
// one transaction per batch. A store that fails is reported down (Up,
// a metric and one log line); the Writer keeps the pending changes (one
// per key, so bounded by the live records) and retries until it is back.
// The control plane refuses new calls meanwhile; calls in progress go on.
//
// For the engineer who builds several control planes on this: leases
// ([Store.Lease]) give one process the ownership of a key (a WebSocket, a
// dialog) until it stops renewing, and [Store.Publish] / [Store.Subscribe]
// carry messages between processes (requests for a WebSocket another
// process holds). The embedded and memory stores implement both within
// the process.
package state

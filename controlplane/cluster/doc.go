// Package cluster lets several control planes on one shared state store
// (Redis: --state redis://...) act as one service without stepping on
// each other's calls.
//
// Each control plane has an instance id (--instance-id; default the host
// name and a random suffix) and a lease in the store, "instance/ID",
// renewed every [DefaultHeartbeat] and expiring [DefaultTTL] after the
// last renewal. Each call record names its owner (package b2bua). At
// start a control plane carries on only its own calls (the same instance
// id after a restart) and those of members whose lease has expired; a
// live peer's calls are never touched, nor its dataplane sessions
// (labelled with their creator's instance id, package dpool).
//
// While running, every member checks the others at each heartbeat. A
// member whose lease is seen expired at two checks in a row (so a member
// whose store connection flapped gets one heartbeat to renew) is taken
// over: the survivors race for the claim "takeover/ID" (an atomic lease:
// exactly one wins), the winner checks once more that the lease is still
// expired, carries the dead member's calls on as their new owner, writes
// them, deletes the sessions the dead member left for calls that cannot
// go on (ringing ones), and removes the member. A call is thus carried
// on between 10 s and about 14 s after its control plane died (lease TTL
// plus at most two heartbeats).
//
// Timing: heartbeat 2 s, TTL 10 s: a member survives four missed renewals
// (a store failover, a long GC pause) before peers act; a smaller TTL
// takes over sooner at the price of false takeovers.
//
// The embedded and memory stores serve one process: no lease is needed
// (nobody else could own a call) and every stored call is this process's.
//
// A member that loses the store for longer than the TTL may find its
// calls taken over when it comes back: it logs it (error level); two
// control planes then answer for the same calls until the stale one is
// restarted. Keep the TTL above the store's failover time.
package cluster

// Package attack is Strait's attack suite: each issue-8 weakness tried as
// an attacker would, against the built strait binary, in the network
// namespace the tests/e2e harness gives the run (loopback only, as root;
// host loopback with free ports otherwise).
//
// Every attack test asserts three things:
//
//   - the attack is refused (no binding, no call, no dial, no answer the
//     attacker can use);
//   - it is counted (a Prometheus counter on /metrics moved);
//   - a legitimate call placed during the attack still works: a Go-side
//     browser (controlplane/siptest's WebSocket phone for signalling,
//     dataplane/mediatest's pion peer for media) registers and calls the
//     echo extension (standalone) or a sipp PBX that echoes RTP (trunk),
//     and its media comes back.
//
// Floods also check that goroutines, open descriptors and heap go back to
// their values before the attack. Each attack is bounded in time (a few
// seconds) and count; nothing sleeps where a condition can be awaited.
// Tests that cannot disturb each other run in parallel, each against its
// own strait.
//
// Attackers send from 127.0.0.2 and up (the whole of 127.0.0.0/8 is
// local), the legitimate caller from 127.0.0.1, so that per-source limits
// tell them apart as they would on a public edge.
//
// The tests, one or more per issue-8 item, are listed in README.md with
// what each attacks and what it asserts.
package attack

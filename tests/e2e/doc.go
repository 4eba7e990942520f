// Package e2e holds Strait's end-to-end tests: the strait binary between
// real peers (JsSIP in headless Chromium, the built-in web phone, sipp as a
// PBX or a caller), signalling and media checked from both ends. The
// harness package runs the peers; README.md says how to run the tests and
// one scenario.
package e2e

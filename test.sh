#!/usr/bin/env bash
# Runs Strait's whole test suite: go vet, then every Go test with the race
# detector. End-to-end tests that need third-party programs (Chromium, sipp)
# get them from scripts/install-test-deps.sh on Debian when it can install
# packages (root, or passwordless sudo), as in CI; elsewhere they skip and
# say what is missing (with CI=true, as .ci/run sets, missing tools fail).
set -euo pipefail
cd "$(dirname "$0")"
if [ -x scripts/install-test-deps.sh ] && command -v apt-get >/dev/null &&
	{ [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
	scripts/install-test-deps.sh
fi
go vet ./...
# deploy/ is a Go module of its own (the Kubernetes modules stay out of
# Strait's go.mod): its tests render the manifests, decode them strictly
# and build the binaries as the Dockerfile does.
(cd deploy && go vet ./... && go test -count=1 -timeout 10m ./...)
# The allocation pins (dataplane, log lines, a call) skip under -race (its instrumentation
# allocates): run them once without it (a few seconds).
go test -count=1 -run 'Allocs' ./dataplane/... ./third_party/... ./internal/logging/ ./controlplane/server/ ./controlplane/sipnet/
go test -race -timeout 14m "$@" ./...

#!/usr/bin/env bash
# Runs Strait's whole test suite: go vet, then every Go test with the race
# detector. End-to-end tests that need third-party programs (Chromium, sipp)
# get them from scripts/install-test-deps.sh when run as root on Debian
# (as CI does); elsewhere they skip and say what is missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x scripts/install-test-deps.sh ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	scripts/install-test-deps.sh
fi
go vet ./...
go test -race -timeout 14m "$@" ./...

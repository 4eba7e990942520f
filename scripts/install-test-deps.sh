#!/bin/sh
# Installs what Strait's end-to-end tests (tests/e2e) need on Debian (as root,
# or through passwordless sudo for the apt part):
# Chromium, sipp, Kamailio (a record-routing and TLS proxy in front of the
# PBX stand-in), baresip (a SIP phone), dnsmasq (names for RFC 3263) and
# redis-server (the shared state store; tests start their own) from apt, and the test page's
# JavaScript (JsSIP, esbuild)
# from npm with the committed package-lock.json. test.sh runs it when it runs
# as root on Debian, as CI does.
#
# Idempotent and quick when everything is in place: apt is consulted only for
# a missing program, and npm ci only when package-lock.json changed since the
# last install (a checksum kept in node_modules).
set -eu
cd "$(dirname "$0")/.."

need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v sipp >/dev/null 2>&1 || need="$need sip-tester"
command -v npm >/dev/null 2>&1 || need="$need nodejs npm"
if ! command -v kamailio >/dev/null 2>&1 || ! dpkg -s kamailio-tls-modules >/dev/null 2>&1 || ! dpkg -s kamailio-presence-modules >/dev/null 2>&1; then
	need="$need kamailio kamailio-tls-modules kamailio-websocket-modules kamailio-extra-modules kamailio-utils-modules kamailio-presence-modules"
fi
command -v baresip >/dev/null 2>&1 || need="$need baresip"
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need="$need dnsmasq-base"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
# curl: the WHIP refusals of controlplane/server.TestWHIP, as a user would send them.
command -v curl >/dev/null 2>&1 || need="$need curl"
# aiortc: a WebRTC stack that is not pion, as the WHIP publisher of controlplane/server.TestWHIP
# (Debian's python3: a pyenv or venv python3 first in PATH does not see Debian's modules).
/usr/bin/python3 -c "import aiortc" >/dev/null 2>&1 || need="$need python3-aiortc"
if [ -n "$need" ]; then
	echo "install-test-deps: apt-get install$need"
	export DEBIAN_FRONTEND=noninteractive
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo -E"
	$sudo apt-get update -qq
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	$sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

js=tests/e2e/js
sum=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
stamp="$js/node_modules/.strait-lock-sha256"
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
	echo "install-test-deps: npm ci in $js"
	(cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
	echo "$sum" >"$stamp"
fi

#!/usr/bin/env bash
# Installs what the interoperability tests (tests/test_bacnet_interop.py, tests/test_sparkplug_interop.py)
# need: Node.js from Debian's packages when `node` is missing (with sudo when not root), then tests/interop's
# npm dependencies (@bacnet-js/client; Eclipse Tahu's sparkplug-payload and mqtt.js) exactly as pinned in its
# package-lock.json (`npm ci`), only when node_modules is missing or older than the lock file.
# Safe to run again: it only installs what is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

interop=tests/interop

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "install_interop: installing nodejs and npm from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

stamp=$interop/node_modules/.package-lock.json  # written by npm ci / npm install
if [ ! -d "$interop/node_modules" ] || [ ! -f "$stamp" ] || [ "$interop/package-lock.json" -nt "$stamp" ]; then
    echo "install_interop: installing $interop's npm dependencies (npm ci)"
    npm ci --prefix "$interop" --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi

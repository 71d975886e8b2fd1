#!/usr/bin/env bash
# Prepares this checkout: a virtualenv in .venv with edge-agent installed (editable, with the dev tools),
# socat (the simulator's virtual RS-485 bus), and with --test-tools what the test suite talks to:
# mosquitto, mbpoll and libfaketime (clock steps) from Debian, and @bacnet-js/client, sparkplug-payload and
# mqtt from npm (scripts/install_interop.sh).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: edge-agent needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 1
fi

missing=()
command -v socat >/dev/null || missing+=(socat)
if [ "${1:-}" = "--test-tools" ]; then
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
    command -v mbpoll >/dev/null || missing+=(mbpoll)
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(libfaketime)  # test_clock_steps
    command -v systemd-analyze >/dev/null || missing+=(systemd)  # the unit files are verified
fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--test-tools" ]; then
    bash scripts/install_interop.sh  # Node.js; @bacnet-js/client and Tahu's sparkplug-payload, independent peers
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.edge-agent-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi

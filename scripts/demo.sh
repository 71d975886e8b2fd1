#!/usr/bin/env bash
# One command on a fresh machine: install, then run the simulator and the agent with a live view.
# Arguments go to `edge-sim demo` (try --help, --for 30, --broker mqtt://HOST:1883).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edge-sim demo "$@"

#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then lint, type-check and run the suite.
# Arguments go to pytest (e.g. -k uplink).
set -euo pipefail
cd "$(dirname "$0")/.."
# Some machines set PYTHONDONTWRITEBYTECODE: every process a test starts (the agent, the simulator, the CLI)
# would then compile the whole package again at start-up, seconds each on two cores.
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh --test-tools
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"

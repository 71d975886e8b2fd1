#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then lint, type-check and run the suite.
# Arguments go to pytest (e.g. -k uplink).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test-tools
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"

#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, types, dependency audit, then the unit,
# in-process and end-to-end tiers. With no arguments the tests run in two phases: everything
# that may share the machine on two processes (pytest-xdist, a file per process at a time), then
# the tests marked `serial` (timing-sensitive: rollout, fleet, timeouts, soaks) alone. With
# arguments, pytest runs them as given, in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/mypy
bash scripts/audit.sh
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
status=0
.venv/bin/python -m pytest -n 2 --dist loadfile -m "not serial" || status=$?
.venv/bin/python -m pytest -m serial || status=$?
exit "$status"

#!/usr/bin/env bash
# Create .venv (if missing) and install Tandem with its test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
# The `drum` command (tandem-drum), unless DataRobot's datarobot-drum is here to provide it.
if ! .venv/bin/python -m pip show --quiet datarobot-drum >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --no-deps ./packaging/tandem-drum
fi

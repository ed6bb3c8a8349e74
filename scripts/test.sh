#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, types, dependency audit, then the unit,
# in-process and end-to-end tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/mypy
bash scripts/audit.sh
.venv/bin/python -m pytest "$@"

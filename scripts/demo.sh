#!/usr/bin/env bash
# Set up, serve the bundled regression example on every stack in turn, and score its data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PORT="${PORT:-8080}"
for stack in fastapi gunicorn flask; do
  MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE="$stack" .venv/bin/tandem server \
    --code-dir examples/regression --target-type regression \
    --address "127.0.0.1:$PORT" --logging-level info > "/tmp/tandem-demo-$stack.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$PORT/ping" > /dev/null && break
    if ! kill -0 "$pid" 2>/dev/null; then cat "/tmp/tandem-demo-$stack.log"; exit 1; fi
    sleep 0.2
  done
  grep -m1 "Starting" "/tmp/tandem-demo-$stack.log"
  echo "POST /predict/ on $stack:"
  curl -sS -X POST -H "Content-Type: text/csv" --data-binary @examples/regression/data.csv \
    "http://127.0.0.1:$PORT/predict/"
  echo
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

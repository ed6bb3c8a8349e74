#!/usr/bin/env bash
# Check the installed dependencies (.venv) against known vulnerabilities with pip-audit, which
# runs from its own virtualenv so it adds nothing to the project's. Fails on any finding. Where
# pip-audit cannot reach its advisory service it audits nothing: that is said, loudly, not passed
# over as "no known vulnerabilities".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv-audit/bin/pip-audit ]; then
  "$PY" -m venv .venv-audit
  .venv-audit/bin/python -m pip install --quiet --upgrade pip "pip-audit>=2.7"
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
set +e
.venv-audit/bin/pip-audit --path "$site" --format json --progress-spinner off \
  --output .venv-audit/report.json 2> .venv-audit/stderr.txt
status=$?
set -e
.venv-audit/bin/python - "$status" <<'PY'
import json, sys
doc = json.load(open(".venv-audit/report.json"))
deps = doc.get("dependencies", [])
found = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in deps for v in d.get("vulns", [])]
skipped = [d["name"] for d in deps if d.get("skip_reason")]
for name, version, vid, fixes in found:
    print(f"pip-audit: {name} {version}: {vid} (fixed in {', '.join(fixes) or 'no release'})")
checked = len(deps) - len(skipped)
print(f"pip-audit: {checked} of {len(deps)} installed packages checked, {len(found)} known vulnerabilities")
if skipped:
    print(f"pip-audit: WARNING: {len(skipped)} packages could not be checked (advisory service "
          "unreachable from here); this run proves nothing about them")
sys.exit(1 if found else 0)
PY

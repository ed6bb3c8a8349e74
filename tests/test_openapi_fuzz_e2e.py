"""Schemathesis against real servers of every stack, from Tandem's published OpenAPI description
(src/tandem/api/openapi.yaml): a few hundred generated requests per stack in CI; bench/fuzz.py
runs over ten thousand. Pass: no check fails, no worker dies, no 5xx (issue 13, section 4)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import EXAMPLES, REPO, SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

SPEC = REPO / "src" / "tandem" / "api" / "openapi.yaml"
ST = Path(sys.executable).parent / "st"


def _count(text: str, pattern: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(pattern, line)
    )


def test_the_description_is_valid_openapi_covering_the_drum_routes() -> None:
    doc = yaml.safe_load(SPEC.read_text())
    assert doc["openapi"].startswith("3.")
    for path in ("/", "/ping/", "/health/", "/info/", "/stats/", "/predict/", "/readyz"):
        assert path in doc["paths"], path


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_fuzzed_requests_break_nothing(tmp_path: Path, server_type: str) -> None:
    env = {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    args = ["--target-type", "regression"]
    code_dir = tmp_path / "regression"
    shutil.copytree(EXAMPLES / "regression", code_dir)
    with ServerProcess(code_dir, server_type, args=args, env=env) as srv:
        run = subprocess.run(
            [
                str(ST),
                "run",
                str(SPEC),
                "--url",
                srv.url,
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "40",
                "--seed",
                "1204",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-4000:]
        generated = int(re.search(r"(\d+) generated", run.stdout).group(1))  # type: ignore[union-attr]
        assert generated >= 200
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
        assert _count(metrics, r'drum_requests_total\{.*status="5\d\d"') == 0
        assert _count(metrics, r"drum_worker_restarts_total\{") == 0
        assert srv.proc is not None and srv.proc.poll() is None

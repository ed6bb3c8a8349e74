"""A model call stuck past DRUM_CLIENT_REQUEST_TIMEOUT on real servers of every stack: the
client gets 504, the stuck worker is replaced and counted, and the server keeps scoring.
Regression test for issue 13 defect 4 (FastAPI hung for ever while /readyz said ready)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SERVER_TYPES, ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e

CSV = {"Content-Type": "text/csv"}
TIMEOUT_BODY = (
    b'{"message":"ERROR: The model did not answer within 2s (DRUM_CLIENT_REQUEST_TIMEOUT)."}\n'
)


def _restarts(url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "drum_worker_restarts_total":
                return sample.value
    raise AssertionError("drum_worker_restarts_total missing")


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_stuck_model_call_answers_504_and_the_worker_is_replaced(
    tmp_path: Path, server_type: str
) -> None:
    code_dir = fixture_dir("hang_on_demand", tmp_path)
    env = {"DRUM_CLIENT_REQUEST_TIMEOUT": "2", "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(code_dir, server_type, args=["--target-type", "regression"], env=env) as srv:
        started = time.monotonic()
        r = httpx.post(srv.url + "/predict/", content=b"a,hang\n1,2\n", headers=CSV, timeout=60)
        assert r.status_code == 504
        assert r.content == TIMEOUT_BODY
        assert time.monotonic() - started < 30  # well before the hook's 10 minutes
        if server_type != "flask":  # the development server has no workers to replace
            deadline = time.monotonic() + 30
            while _restarts(srv.url) < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _restarts(srv.url) == 1
            assert "was replaced: a model call outran DRUM_CLIENT_REQUEST_TIMEOUT" in srv.logs()
        # The server goes on scoring, and says it is ready.
        for _ in range(4):
            ok = httpx.post(srv.url + "/predict/", content=b"a,b\n1,2\n", headers=CSV, timeout=30)
            assert ok.status_code == 200 and ok.json() == {"predictions": [3.0]}
        assert httpx.get(srv.url + "/readyz", timeout=10).status_code == 200
        assert srv.proc is not None and srv.proc.poll() is None

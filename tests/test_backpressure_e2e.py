"""Backpressure, the concurrency cap and worker recycling on real FastAPI servers (issue 13,
section 2): refused requests get 503 JSON with Retry-After instead of queueing without end.

The Flask stacks serve one request per worker process at a time; their queue is the listening
socket's backlog, so these settings are FastAPI's."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e

HIGH_LOAD = b'{"message":"ERROR: Service temporarily unavailable due to high load"}\n'
QUEUE_TIMEOUT = b'{"message":"ERROR: Service temporarily unavailable: request queue timeout"}\n'


def _burst(url: str, n: int) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        return httpx.post(
            url + "/predict/",
            content=b"a,b\n1,2\n",
            headers={"Content-Type": "text/csv"},
            timeout=60,
        )

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _slow_server(tmp_path: Path, **env: str) -> ServerProcess:
    code_dir = fixture_dir("regression_slow", tmp_path)
    return ServerProcess(
        code_dir,
        "fastapi",
        args=["--target-type", "regression"],
        env={"ROUTER_TEST_DELAY": "1.5", **env},
    )


def test_full_queue_is_refused_at_once(tmp_path: Path) -> None:
    with _slow_server(tmp_path, DRUM_MAX_QUEUE_DEPTH="2") as srv:
        answers = _burst(srv.url, 6)
    refused = [r for r in answers if r.status_code == 503]
    assert sorted(r.status_code for r in answers) == [200, 200, 503, 503, 503, 503]
    assert all(r.content == HIGH_LOAD and r.headers["retry-after"] == "5" for r in refused)


def test_waiting_past_the_backpressure_timeout_is_refused(tmp_path: Path) -> None:
    with _slow_server(tmp_path, DRUM_BACKPRESSURE_TIMEOUT="0.5") as srv:
        answers = _burst(srv.url, 3)
    refused = [r for r in answers if r.status_code == 503]
    assert sorted(r.status_code for r in answers) == [200, 503, 503]
    assert all(r.content == QUEUE_TIMEOUT and r.headers["retry-after"] == "10" for r in refused)


def test_concurrency_cap(tmp_path: Path) -> None:
    with _slow_server(tmp_path, DRUM_UVICORN_LIMIT_CONCURRENCY="2") as srv:
        answers = _burst(srv.url, 5)
        assert httpx.get(srv.url + "/ping", timeout=10).status_code == 200  # served after
    assert sorted(r.status_code for r in answers) == [200, 200, 503, 503, 503]


def test_workers_are_recycled_after_max_requests(tmp_path: Path) -> None:
    code_dir = fixture_dir("regression_hooks", tmp_path)
    env = {"DRUM_UVICORN_MAX_REQUESTS": "5"}
    with ServerProcess(code_dir, "fastapi", args=["--target-type", "regression"], env=env) as srv:
        pids = set()
        with httpx.Client(timeout=30) as client:
            for _ in range(12):
                r = client.post(
                    srv.url + "/predict/",
                    content=b"a,b\n1,2\n",
                    headers={"Content-Type": "text/csv", "Connection": "close"},
                )
                assert r.status_code == 200
                stats = client.get(srv.url + "/stats/", headers={"Connection": "close"}).json()
                pids |= {w["pid"] for w in stats["worker_info"]["workers"]}
                time.sleep(0.25)  # Uvicorn checks the request count on its 0.1 s tick
        assert len(pids) >= 2  # the first worker left after its 5th request, replaced

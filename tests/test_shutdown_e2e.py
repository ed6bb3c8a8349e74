"""SIGTERM on a real server of every stack: requests in flight finish, or the exit says they
were cut off. Regression test for issue 13 defect 5 (the Flask development server exited 0
at once, dropping the request it was serving)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import SERVER_TYPES, ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e


def _stop_while_serving(tmp_path: Path, server_type: str, delay: float, grace: int) -> dict:
    code_dir = fixture_dir("regression_slow", tmp_path)
    env = {
        "ROUTER_TEST_DELAY": str(delay),
        "DRUM_GUNICORN_GRACEFUL_TIMEOUT": str(grace),
        "DRUM_UVICORN_GRACEFUL_TIMEOUT": str(grace),
    }
    server = ServerProcess(code_dir, server_type, args=["--target-type", "regression"], env=env)
    server.start()
    out: dict[str, Any] = {}

    def request() -> None:
        try:
            r = httpx.post(
                server.url + "/predict/",
                content=b"a,b\n1,2\n",
                headers={"Content-Type": "text/csv"},
                timeout=60,
            )
            out["status"], out["body"] = r.status_code, r.content
        except httpx.HTTPError as exc:
            out["error"] = exc

    try:
        client = threading.Thread(target=request)
        client.start()
        time.sleep(0.5)  # the request is in the model's hook now
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        client.join(timeout=60)
        out["exit"] = server.proc.wait(timeout=60)
        out["logs"] = server.logs()
    finally:
        server.stop()
    return out


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_request_in_flight_finishes_after_sigterm(tmp_path: Path, server_type: str) -> None:
    out = _stop_while_serving(tmp_path, server_type, delay=2.0, grace=20)
    assert out.get("status") == 200, out
    assert out["body"] == b'{"predictions":[3.0]}'
    assert out["exit"] == 0, out["logs"]


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_request_cut_off_at_the_graceful_timeout_exits_non_zero(
    tmp_path: Path, server_type: str
) -> None:
    out = _stop_while_serving(tmp_path, server_type, delay=10.0, grace=1)
    assert "status" not in out  # the client saw the connection end, never a made-up answer
    assert out["exit"] == 1, out["logs"]
    assert "cut" in out["logs"] and "GRACEFUL_TIMEOUT" in out["logs"]

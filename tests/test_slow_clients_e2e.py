"""Clients that never finish their headers, on real servers of every stack: dropped after
DRUM_UVICORN_HEADER_TIMEOUT (issue 13, defect 5). Uvicorn had no header timeout at all, and
Gunicorn's sync workers could each be held by one such client for the whole timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conformance_cases import MODELS
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

TIMEOUT_BODY = (
    b'{"message":"ERROR: Request headers were not received in time '
    b'(DRUM_UVICORN_HEADER_TIMEOUT)."}\n'
)


@pytest.fixture(params=SERVER_TYPES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    spec = MODELS["regression"]
    env = {"DRUM_UVICORN_HEADER_TIMEOUT": "2", "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(spec.build(tmp_path), request.param, args=list(spec.args), env=env) as s:
        yield s


def _stall(port: int, first_bytes: bytes) -> tuple[float, bytes]:
    """Send ``first_bytes`` and nothing more; how long until the server ended the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(first_bytes)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    return time.monotonic() - started, data


@pytest.mark.parametrize("first_bytes", [b"", b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: "])
def test_a_stalled_client_is_dropped_after_the_header_timeout(
    server: ServerProcess, first_bytes: bytes
) -> None:
    waited, data = _stall(server.port, first_bytes)
    assert 1.5 <= waited < 15, waited
    if server.server_type in ("fastapi", "gunicorn"):
        assert data.startswith(b"HTTP/1.1 408 ") and data.endswith(TIMEOUT_BODY), data
    else:  # Werkzeug closes the socket at the timeout without an answer
        assert data == b"", data
    assert httpx.get(server.url + "/ping", timeout=30).status_code == 200


@pytest.mark.parametrize("server_type", ["fastapi", "gunicorn"])
def test_serves_while_200_clients_stall(tmp_path: Path, server_type: str) -> None:
    """200 connections that never finish their headers take none of the workers' time: every
    normal request is answered, none waits for a stalled client's timeout (30 s here)."""
    spec = MODELS["regression"]
    env = {"DRUM_UVICORN_HEADER_TIMEOUT": "30", "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(spec.build(tmp_path), server_type, args=list(spec.args), env=env) as srv:
        stalled = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            sock.sendall(b"POST /predict/ HTTP/1.1\r\nHost: x\r\n")
            stalled.append(sock)
        try:
            with ThreadPoolExecutor(4) as pool:
                answers = list(
                    pool.map(
                        lambda _: (
                            httpx.post(
                                srv.url + "/predict/",
                                content=b"a,b\n1,2\n",
                                headers={"Content-Type": "text/csv"},
                                timeout=20,
                            ).status_code
                        ),
                        range(40),
                    )
                )
            assert answers == [200] * 40
        finally:
            for sock in stalled:
                sock.close()

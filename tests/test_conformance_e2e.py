"""Every HTTP case against real Flask-dev, Gunicorn and Uvicorn processes on 127.0.0.1."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conformance import Answer, check_golden, check_identical, send
from tests.conformance_cases import CASES, MODELS
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("model", sorted(MODELS))
def test_model_on_every_stack(model: str, tmp_path: Path) -> None:
    spec = MODELS[model]
    code_dir = spec.build(tmp_path)
    servers = {
        st: ServerProcess(code_dir, st, args=spec.cli_args(code_dir), env=dict(spec.env))
        for st in SERVER_TYPES
    }
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.start, servers.values()))
    try:
        cases = [c for c in CASES if c.model == model]
        assert cases
        for case in cases:
            answers: dict[str, Answer] = {}
            for st, server in servers.items():
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    answer = send(client, case)
                check_golden(case, answer, st)
                answers[st] = answer
            check_identical(case, answers)
        for st, server in servers.items():
            assert server.proc is not None and server.proc.poll() is None, (
                f"{st} died:\n{server.logs()}"
            )
    finally:
        for server in servers.values():
            server.stop()

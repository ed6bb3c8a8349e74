"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: End-to-end tests that must not share the machine with another test: their verdicts hang on
#: timing (rollout and fleet controllers judging latency and liveness, timeouts, drains, slow
#: clients, the fuzzer's "no 5xx"), or they read the kernel's OOM-kill counters, which a
#: concurrent OOM test would move. ``scripts/test.sh`` runs them alone, after the rest has run
#: on two processes.
SERIAL_DIRS = ("rollout", "fleet")
SERIAL_FILES = frozenset(
    {
        "test_observability_e2e.py",
        "test_request_timeout_e2e.py",
        "test_shutdown_e2e.py",
        "test_slow_clients_e2e.py",
        "test_uvicorn_loop_e2e.py",
        "test_backpressure_e2e.py",
        "test_openapi_fuzz_e2e.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SERIAL_DIRS` and :data:`SERIAL_FILES` ``serial``."""
    tests = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        parts = path.relative_to(tests).parts if path.is_relative_to(tests) else ()
        if path.name in SERIAL_FILES or (len(parts) > 1 and parts[0] in SERIAL_DIRS):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _clean_runtime_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit server-type or runtime parameters from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("MLOPS_RUNTIME_PARAM_") or key in (
            "DRUM_SERVER_TYPE",
            "URL_PREFIX",
            "TARGET_TYPE",
            "CODE_DIR",
            "ADDRESS",
            "MAX_WORKERS",
            "TARGET_NAME",
            "DRUM_FASTAPI_CANARY_PERCENT",
            "MLOPS_DEPLOYMENT_ID",
        ):
            monkeypatch.delenv(key, raising=False)


#: Exported by a server started in-process (``tandem.cli.main``): never shared between tests.
SERVER_STATE_VARIABLES = ("TANDEM_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR", "TANDEM_MASTER_PID")


@pytest.fixture(autouse=True)
def _forget_server_state() -> Iterator[None]:
    """Drop a server state directory an in-process start exported, before and after a test."""
    for key in SERVER_STATE_VARIABLES:
        os.environ.pop(key, None)
    yield
    for key in SERVER_STATE_VARIABLES:
        os.environ.pop(key, None)

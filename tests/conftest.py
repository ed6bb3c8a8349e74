"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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

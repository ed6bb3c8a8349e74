"""Shared fixtures."""

from __future__ import annotations

import os

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

"""``/readyz`` tells the truth about a worker whose model threads are stuck or that is leaving."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

from tandem.core.http import Headers, QueryDict, Request
from tandem.core.service import PredictionService
from tests.conformance import settings_for
from tests.conformance_cases import MODELS


def _service(tmp_path: Path, timeout: float = 2.0) -> PredictionService:
    spec = MODELS["regression"]
    settings = settings_for(spec, spec.build(tmp_path), "fastapi")
    return PredictionService.load(dataclasses.replace(settings, request_timeout=timeout))


def _readyz(service: PredictionService) -> tuple[int, dict]:
    resp = service.readyz(Request("GET", "/readyz", Headers.from_pairs([]), QueryDict([]), b""))
    assert isinstance(resp.body, bytes)
    return resp.status, json.loads(resp.body)


def test_ready_when_idle(tmp_path: Path) -> None:
    assert _readyz(_service(tmp_path)) == (200, {"status": "ready"})


def test_not_ready_while_the_worker_is_being_replaced(tmp_path: Path) -> None:
    service = _service(tmp_path)
    service.recycling = True
    status, doc = _readyz(service)
    assert status == 503 and "DRUM_CLIENT_REQUEST_TIMEOUT" in doc["reason"]


def test_not_ready_while_every_model_thread_is_stuck(tmp_path: Path) -> None:
    service = _service(tmp_path, timeout=2.0)
    # A model call that started 5 s ago on another thread (one executor thread in all).
    service._calls[threading.get_ident() + 1] = time.monotonic() - 5.0
    assert service.stuck_calls() == 1
    status, doc = _readyz(service)
    assert status == 503 and "every model thread" in doc["reason"]


def test_a_call_within_the_timeout_is_not_stuck(tmp_path: Path) -> None:
    service = _service(tmp_path, timeout=2.0)
    service._calls[threading.get_ident() + 1] = time.monotonic() - 1.0
    assert service.stuck_calls() == 0
    assert _readyz(service)[0] == 200


def test_no_timeout_means_never_stuck(tmp_path: Path) -> None:
    service = _service(tmp_path, timeout=0.0)
    service._calls[threading.get_ident() + 1] = time.monotonic() - 3600.0
    assert _readyz(service)[0] == 200

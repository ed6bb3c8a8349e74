"""PagerDuty paging: one incident per rollout, and its events delivered in the order sent."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tandem.rollout import paging
from tandem.rollout.paging import PagerDuty, dedup_key


def test_one_dedup_key_per_rollout() -> None:
    assert dedup_key(1_700_000_000.25) == dedup_key(1_700_000_000.25)
    assert dedup_key(1_700_000_000.25) != dedup_key(1_700_000_001.25)


def test_resolve_is_never_delivered_before_the_trigger_it_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trigger whose first attempt PagerDuty refuses (429/5xx) is retried after a pause. A
    resolve sent meanwhile must wait for it: delivered first, PagerDuty drops the resolve (no
    open incident) and then opens an incident nothing will ever close."""
    delivered: list[str] = []
    attempts: dict[str, int] = {}
    resolve_delivered = threading.Event()

    def post(url: str, json: dict[str, Any], timeout: float) -> httpx.Response:
        action = json["event_action"]
        attempts[action] = attempts.get(action, 0) + 1
        if action == "trigger" and attempts[action] == 1:
            return httpx.Response(500)
        delivered.append(action)
        if action == "resolve":
            resolve_delivered.set()
        return httpx.Response(202)

    # The retry pause lasts until the resolve was delivered (or a second, when it cannot be).
    monkeypatch.setattr(paging.httpx, "post", post)
    monkeypatch.setattr(
        paging, "time", SimpleNamespace(sleep=lambda seconds: resolve_delivered.wait(1.0))
    )
    pager = PagerDuty("http://pd.invalid/v2/enqueue", "key")
    key = dedup_key(1_700_000_000.0)
    pager.trigger(key, "rolled back", {})
    pager.resolve(key)
    deadline = time.monotonic() + 10
    while len(delivered) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert delivered == ["trigger", "resolve"]

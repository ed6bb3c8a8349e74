"""The walker's real seams: probing a deployment, waiting for it to be ready on a side, and
verifying it there with ``tandem verify``'s checklist, in process."""

from __future__ import annotations

from typing import Any

import httpx

from tandem.fleet.inventory import Member
from tandem.fleet.walker import Probe
from tandem.ops import framework_of, stack_from_info
from tandem.ops.rollback import wait_ready as _wait_ready
from tandem.ops.verify import verify_for_controller


def probe(member: Member, timeout: float = 2.0) -> Probe:
    """``/ping`` and ``/info/``: whether it answers, and on which side."""
    headers = member.verify.headers
    try:
        with httpx.Client(headers=headers, timeout=timeout, verify=False) as client:
            ping = client.get(member.url + "/ping")
            if ping.status_code != 200:
                return Probe(False, None, f"/ping answered {ping.status_code}")
            info = client.get(member.url + "/info/")
    except httpx.HTTPError as exc:
        return Probe(False, None, f"{type(exc).__name__}: {exc}"[:200])
    try:
        stack = stack_from_info(info.json()) if info.status_code == 200 else None
    except (ValueError, AttributeError):
        stack = None
    if stack is None:
        return Probe(True, None, f"/info/ answered {info.status_code} without a known stack")
    return Probe(True, framework_of(stack), "")


def wait_ready(member: Member, side: str) -> tuple[bool, str]:
    """:func:`tandem.ops.rollback.wait_ready` for one deployment: ``/readyz``, ``/ping``, and
    ``/info/`` reporting ``side``, within its ``ready_timeout``."""
    ready, seen, _ = _wait_ready(member.url, side, member.verify.headers, member.ready_timeout)
    return ready, seen


def verify(member: Member, side: str) -> dict[str, Any]:
    """``tandem verify <url> --expect-server <side>`` with the entry's verify settings."""
    settings = member.verify
    overrides: dict[str, Any] = {"headers": dict(settings.headers), "timeout": settings.timeout}
    if settings.payload is not None:
        overrides["payload"] = settings.payload
    if settings.log_file is not None:
        overrides["log_file"] = settings.log_file
    result = verify_for_controller(
        member.url, expect_server=side, code_dir=settings.code_dir, **overrides
    )
    result.pop("report", None)  # the items say enough; the state keeps every deployment's
    failed = [f"{i['name']}: {i['saw']}" for i in result.get("items", []) if not i["passed"]]
    if failed:
        result["summary"] = "failed " + "; ".join(failed)[:400]
    return result

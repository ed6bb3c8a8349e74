"""Post-rollback verification of the baseline, for the controller."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger("tandem.rollout")


def _framework(server_type: str) -> str:
    return "fastapi" if server_type == "fastapi" else "flask"


def _sample_payload(code_dir: Path | None) -> bytes | None:
    if code_dir is None:
        return None
    for name in ("data.csv", *sorted(p.name for p in code_dir.glob("*.csv"))):
        path = code_dir / name
        if path.is_file():
            return path.read_bytes()
    return None


def minimal_checks(
    url: str, framework: str, target_type: str, payload: bytes | None
) -> dict[str, Any]:
    """The rollback plan's immediate and functional checks, without extras."""
    items: list[dict[str, Any]] = []

    def check(name: str, ok: bool, saw: str) -> None:
        items.append({"name": name, "passed": ok, "saw": saw})

    with httpx.Client(base_url=url, timeout=10.0) as client:
        for path in ("/ping", "/health/"):
            try:
                r = client.get(path)
                check(f"{path} 200", r.status_code == 200, str(r.status_code))
            except httpx.HTTPError as exc:
                check(f"{path} 200", False, repr(exc))
        try:
            info = client.get("/info/").json()
            check(
                f"/info/ drumServer={framework}",
                info.get("drumServer") == framework,
                str(info.get("drumServer")),
            )
        except (httpx.HTTPError, ValueError) as exc:
            check(f"/info/ drumServer={framework}", False, repr(exc))
        if payload is not None and target_type not in ("unstructured", "transform"):
            lines = payload.splitlines(keepends=True)
            for name, body in (
                ("single prediction", b"".join(lines[:2])),
                ("batch prediction", payload),
            ):
                try:
                    r = client.post("/predict/", content=body, headers={"Content-Type": "text/csv"})
                    check(name, r.status_code == 200, str(r.status_code))
                except httpx.HTTPError as exc:
                    check(name, False, repr(exc))
        try:
            r = client.get("/stats/")
            check(
                "/stats/ valid", r.status_code == 200 and "mem_info" in r.json(), str(r.status_code)
            )
        except (httpx.HTTPError, ValueError) as exc:
            check("/stats/ valid", False, repr(exc))
    failed = [i["name"] for i in items if not i["passed"]]
    return {
        "passed": not failed,
        "items": items,
        "summary": "all checks passed" if not failed else "failed: " + ", ".join(failed),
    }


def baseline_verifier(
    code_dir: Path | None, server_type: str, target_type: str
) -> Callable[[str], dict[str, Any]]:
    """A callable that verifies the baseline at a URL and returns a JSON-able result."""
    framework = _framework(server_type)
    payload = _sample_payload(code_dir)

    def verify(url: str) -> dict[str, Any]:
        try:
            from tandem.ops import verify as ops_verify

            runner = getattr(ops_verify, "verify_for_controller", None)
        except ImportError:
            runner = None
        if runner is not None:
            return dict(runner(url, expect_server=framework, code_dir=code_dir))
        return minimal_checks(url, framework, target_type, payload)

    return verify

"""Running conformance cases against a client and comparing answers across stacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tandem.cli import build_parser, merge_env
from tandem.core.http import SECURITY_HEADERS
from tandem.settings import ServeSettings, build_settings
from tests.conformance_cases import Case, ModelSpec

#: /info/ keys that name the stack and so differ between stacks by design.
STACK_INFO_KEYS = ("drumServer", "drum_server", "processServer")


@dataclass
class Answer:
    """What a stack answered: the parts the conformance suite compares."""

    status: int
    content_type: str | None
    headers: dict[str, str]
    body: bytes


def encode(case: Case) -> tuple[bytes, dict[str, str]]:
    """The exact request body and headers for a case (multipart encoded once, reused)."""
    headers = {k: v for k, v in case.headers}
    if case.files or case.data:
        req = httpx.Request(
            case.method,
            "http://x/",
            files=[(name, (fname, content)) for name, fname, content in case.files] or None,
            data=dict(case.data) or None,
        )
        body = req.read()
        headers["Content-Type"] = req.headers["content-type"]
        return body, headers
    return case.body, headers


def send(client: httpx.Client, case: Case, request_id: str = "req-conformance-1") -> Answer:
    """Send a case with a fixed request id and collect the answer."""
    body, headers = encode(case)
    headers["X-Request-ID"] = request_id
    resp = client.request(case.method, case.path, content=body, headers=headers)
    return Answer(
        resp.status_code,
        resp.headers.get("content-type"),
        {k.lower(): v for k, v in resp.headers.items()},
        resp.content,
    )


def check_golden(case: Case, answer: Answer, label: str) -> None:
    """Assert the pinned status, body and headers of a case."""
    where = f"[{label}] {case.id}"
    assert answer.status == case.status, f"{where}: status {answer.status}: {answer.body[:500]!r}"
    if case.body_exact is not None:
        assert answer.body == case.body_exact, f"{where}: body {answer.body!r}"
    text = answer.body.decode("utf-8", "replace")
    for needle in case.body_contains:
        assert needle in text, f"{where}: {needle!r} not in {text[:800]!r}"
    if case.content_type is not None:
        assert answer.content_type == case.content_type, f"{where}: {answer.content_type}"
    for name, value in case.extra.items():
        assert answer.headers.get(name) == value, f"{where}: header {name}={answer.headers}"
    assert answer.headers.get("x-drum-version"), f"{where}: no X-Drum-Version"
    for name, value in SECURITY_HEADERS:
        assert answer.headers.get(name.lower()) == value, f"{where}: {name}: {answer.headers}"
    # No stack names its server (uvicorn, gunicorn, Werkzeug) in a Server header.
    assert "server" not in {k.lower() for k in answer.headers}, f"{where}: {answer.headers}"
    assert answer.headers.get("x-request-id") == "req-conformance-1", f"{where}: request id"
    if answer.content_type == "application/json":
        json.loads(answer.body)


def comparable_body(case: Case, answer: Answer) -> Any:
    """The body as compared across stacks (the stack-naming /info/ keys removed)."""
    if case.path.rstrip("/").endswith("/info") and answer.status == 200:
        doc = json.loads(answer.body)
        for key in STACK_INFO_KEYS:
            doc.pop(key, None)
        return doc
    return answer.body if case.compare_body else None


def check_identical(case: Case, answers: dict[str, Answer]) -> None:
    """Every stack answered with the same status, content type, headers and body bytes."""
    first_label, first = next(iter(answers.items()))
    for label, other in answers.items():
        where = f"{case.id}: {first_label} vs {label}"
        assert other.status == first.status, f"{where}: {first.status} != {other.status}"
        assert other.content_type == first.content_type, where
        for name in (
            "allow",
            "x-drum-user-http-error",
            "x-drum-version",
            "x-request-id",
            *(k.lower() for k, _ in SECURITY_HEADERS),
        ):
            assert other.headers.get(name) == first.headers.get(name), f"{where}: {name}"
        assert comparable_body(case, other) == comparable_body(case, first), (
            f"{where}: {first.body[:300]!r} != {other.body[:300]!r}"
        )


def settings_for(spec: ModelSpec, code_dir: Path, server_type: str) -> ServeSettings:
    """Settings as ``tandem server`` would build them for this spec and server type."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env.update(dict(spec.env))
    env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = server_type
    args = build_parser().parse_args(
        ["server", "--code-dir", str(code_dir), *spec.cli_args(code_dir)]
    )
    return build_settings(merge_env(args, env), env)

"""CORS on real servers of every stack: off by default, restrictive when on (issue 13,
section 2). Every stack must give the same status and CORS headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conformance_cases import MODELS
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

APP = "https://app.example"
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "vary",
)


def _servers(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> dict:
    spec = MODELS["regression"]
    started = {}
    for server_type in SERVER_TYPES:
        code_dir = spec.build(tmp_path_factory.mktemp(server_type))
        started[server_type] = ServerProcess(
            code_dir, server_type, args=list(spec.args), env=env
        ).start()
    return started


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    env = {"DRUM_CORS_ENABLED": "true", "DRUM_CORS_ORIGINS": f"{APP}, https://other.example"}
    servers = _servers(tmp_path_factory, env)
    yield servers
    for server in servers.values():
        server.stop()


def _same(answers: dict[str, httpx.Response]) -> httpx.Response:
    first = next(iter(answers.values()))
    for label, answer in answers.items():
        assert answer.status_code == first.status_code, label
        assert answer.content == first.content, label
        for name in CORS_HEADERS:
            assert answer.headers.get(name) == first.headers.get(name), (label, name)
    return first


def test_preflight_from_an_allowed_origin(explicit: dict[str, ServerProcess]) -> None:
    answers = {
        st: httpx.options(
            s.url + "/predict/",
            headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
        )
        for st, s in explicit.items()
    }
    r = _same(answers)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "GET, POST"
    assert r.headers["access-control-allow-headers"] == "X-Auth-Token, Content-Type, X-Request-ID"
    assert r.headers["access-control-max-age"] == "3600"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        {"Origin": APP, "Access-Control-Request-Method": "DELETE"},
    ],
)
def test_preflight_refused(explicit: dict[str, ServerProcess], headers: dict[str, str]) -> None:
    answers = {
        st: httpx.options(s.url + "/predict/", headers=headers) for st, s in explicit.items()
    }
    r = _same(answers)
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


def test_answers_carry_the_origin_only_for_allowed_origins(
    explicit: dict[str, ServerProcess],
) -> None:
    for origin, allowed in ((APP, True), ("https://evil.example", False)):
        answers = {
            st: httpx.post(
                s.url + "/predict/",
                content=b"a,b\n1,2\n",
                headers={"Content-Type": "text/csv", "Origin": origin},
            )
            for st, s in explicit.items()
        }
        r = _same(answers)
        assert r.status_code == 200
        assert r.headers.get("access-control-allow-origin") == (origin if allowed else None)


def test_cors_is_off_by_default(tmp_path_factory: pytest.TempPathFactory) -> None:
    servers = _servers(tmp_path_factory, {})
    try:
        answers = {
            st: httpx.options(
                s.url + "/predict/",
                headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
            )
            for st, s in servers.items()
        }
        r = _same(answers)
        assert r.status_code == 405
        assert not any(name.startswith("access-control-") for name in r.headers)
    finally:
        for server in servers.values():
            server.stop()


def test_any_origin_never_allows_credentials(tmp_path_factory: pytest.TempPathFactory) -> None:
    servers = _servers(tmp_path_factory, {"DRUM_CORS_ENABLED": "true"})
    try:
        answers = {
            st: httpx.get(s.url + "/info/", headers={"Origin": APP}) for st, s in servers.items()
        }
        for answer in answers.values():
            assert answer.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in answer.headers
    finally:
        for server in servers.values():
            server.stop()

"""Requests the HTTP layer refuses or rewrites, on real servers of every stack: one limit table
(``tandem.core.limits``) and the same JSON answers everywhere. Regression test for issue 13
defect 10 (HTML or plain-text 400s, a traceback on a bad chunk size, 64 KiB headers accepted
by one stack and refused by the others)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.core import limits
from tests.conformance_cases import MODELS
from tests.rawhttp import RawAnswer, exchange
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e


def _get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


MALFORMED = b'{"message":"ERROR: Malformed HTTP request."}\n'
TOO_MANY = (
    b'{"message":"ERROR: Request headers exceed the limits: at most 100 fields of at most 8190 '
    b'bytes each."}\n'
)
LONG_LINE = b'{"message":"ERROR: Request line is longer than 8190 bytes."}\n'
INCOMPLETE = (
    b'{"message":"ERROR: Request body is incomplete: the client stopped sending before its end, '
    b'or its chunked encoding is malformed."}\n'
)

#: (id, raw request, status, body)
EDGES = [
    ("bad-percent-escape", _get("/ping%zz"), 404, b'{"message":"ERROR: Not Found"}\n'),
    ("repeated-slashes", _get("//ping"), 200, b'{"message":"OK"}\n'),
    ("header-64k", _get("/ping", "X-Big: " + "x" * 65536), 431, TOO_MANY),
    (
        "header-at-limit",
        _get("/ping", "X-Big: " + "x" * (limits.MAX_HEADER_FIELD - 10)),
        200,
        b'{"message":"OK"}\n',
    ),
    ("headers-1000", _get("/ping", *(f"X-H{i}: v" for i in range(1000))), 431, TOO_MANY),
    ("headers-90", _get("/ping", *(f"X-H{i}: v" for i in range(90))), 200, b'{"message":"OK"}\n'),
    ("request-line-10k", _get("/ping?" + "a" * 10_000), 414, LONG_LINE),
    ("bad-method", _get("/ping").replace(b"GET", b"G@T", 1), 400, MALFORMED),
    ("bad-version", _get("/ping").replace(b"HTTP/1.1", b"HTTP/9.9", 1), 400, MALFORMED),
    (
        "bad-chunk-size",
        b"POST /predict/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
        INCOMPLETE,
    ),
    (
        "length-and-chunked",
        b"POST /predict/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        MALFORMED,
    ),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    spec = MODELS["regression"]
    started: dict[str, ServerProcess] = {}
    try:
        for server_type in SERVER_TYPES:
            code_dir = spec.build(tmp_path_factory.mktemp(server_type))
            started[server_type] = ServerProcess(code_dir, server_type, args=list(spec.args))
            started[server_type].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.parametrize(
    ("raw", "status", "body"), [e[1:] for e in EDGES], ids=[e[0] for e in EDGES]
)
def test_every_stack_answers_the_same(
    servers: dict[str, ServerProcess], raw: bytes, status: int, body: bytes
) -> None:
    answers: dict[str, RawAnswer] = {
        st: exchange(s.port, raw, timeout=15) for st, s in servers.items()
    }
    for server_type, answer in answers.items():
        where = f"{server_type}: {answer.status} {answer.body[:200]!r}"
        assert answer.status == status, where
        assert answer.body == body, where
        assert answer.headers.get("content-type") == "application/json", where
        assert answer.headers.get("x-drum-version"), where
        assert answer.headers.get("x-content-type-options") == "nosniff", where
        assert "server" not in answer.headers, where
    # And the servers still serve.
    for server in servers.values():
        assert exchange(server.port, _get("/ping"), timeout=15).status == 200

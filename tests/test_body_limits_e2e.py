"""Request bodies on real servers of every stack: whole, or refused; never scored cut short.

Regression tests for issue 13 defect 1: Flask and Gunicorn scored the first ``DRUM_MAX_BODY_SIZE``
bytes of an oversize chunked body with 200, and a chunked body cut short by its client.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conformance_cases import MODELS
from tests.rawhttp import chunked, exchange, post_head
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024
ROW = b"1.5,2.25,-3\n"
TOO_LARGE = {"message": f"ERROR: Request body is larger than the limit of {LIMIT} bytes."}
INCOMPLETE = {
    "message": "ERROR: Request body is incomplete: the client stopped sending before its end, "
    "or its chunked encoding is malformed."
}
CSV_HEADERS = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module", params=SERVER_TYPES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path_factory.mktemp(request.param))
    env = {"DRUM_MAX_BODY_SIZE": str(LIMIT)}
    with ServerProcess(code_dir, request.param, args=list(spec.args), env=env) as srv:
        yield srv


def _csv(rows: int) -> bytes:
    return b"a,b,c\n" + ROW * rows


def _pieces(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _head(extra: dict[str, str]) -> bytes:
    return post_head("/predict/", {**CSV_HEADERS, **extra})


def _still_serves(server: ServerProcess) -> None:
    r = httpx.post(server.url + "/predict/", content=_csv(3), headers=CSV_HEADERS, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


def test_chunked_body_within_the_limit_is_scored_whole(server: ServerProcess) -> None:
    rows = 40_000  # ~480 KB, many chunks
    answer = exchange(
        server.port, _head({"Transfer-Encoding": "chunked"}), chunked(_pieces(_csv(rows)))
    )
    assert answer.status == 200
    assert len(json.loads(answer.body)["predictions"]) == rows


def test_chunked_body_over_the_limit_answers_413_and_scores_nothing(
    server: ServerProcess,
) -> None:
    data = _csv(2 * LIMIT // len(ROW))  # 2 MiB against a 1 MiB limit
    answer = exchange(
        server.port,
        _head({"Transfer-Encoding": "chunked", "Connection": "close"}),
        chunked(_pieces(data)),
    )
    assert answer.status == 413
    assert json.loads(answer.body) == TOO_LARGE
    _still_serves(server)


def test_endless_chunked_body_is_refused_at_the_limit(server: ServerProcess) -> None:
    piece = ROW * 5000
    endless = chunked(itertools.repeat(piece), last=False)
    answer = exchange(
        server.port,
        _head({"Transfer-Encoding": "chunked"}),
        itertools.chain([b"%x\r\na,b,c\n\r\n" % 6], endless),
        send_seconds=20,
    )
    assert answer.status == 413
    assert json.loads(answer.body) == TOO_LARGE
    _still_serves(server)


def test_chunked_body_cut_short_answers_400(server: ServerProcess) -> None:
    data = _csv(1000)
    answer = exchange(
        server.port,
        _head({"Transfer-Encoding": "chunked"}),
        chunked(_pieces(data, 1000), last=False),
        half_close=True,
    )
    assert answer.status == 400
    assert json.loads(answer.body) == INCOMPLETE
    _still_serves(server)


def test_declared_length_cut_short_answers_400(server: ServerProcess) -> None:
    data = _csv(1000)
    answer = exchange(
        server.port,
        _head({"Content-Length": str(len(data) + 500)}),
        _pieces(data, 1000),
        half_close=True,
    )
    assert answer.status == 400
    assert json.loads(answer.body) == INCOMPLETE
    _still_serves(server)


def test_declared_length_over_the_limit_answers_413(server: ServerProcess) -> None:
    answer = exchange(
        server.port, _head({"Content-Length": str(LIMIT + 1), "Connection": "close"}), [b"a,b"]
    )
    assert answer.status == 413
    assert json.loads(answer.body) == TOO_LARGE


def test_error_for_a_large_malformed_body_quotes_only_its_start(server: ServerProcess) -> None:
    """Issue 13 defect 6: the parse error echoed the whole body, in the answer and the log."""
    data = b"a,b,c\n" + ROW * 70_000 + b"1,2,3,4,5\n"  # ~840 KB; the last row has 5 fields
    r = httpx.post(server.url + "/predict/", content=data, headers=CSV_HEADERS, timeout=30)
    assert r.status_code == 422  # DRUM answers 500; the data is at fault (README)
    text = r.json()["message"]
    assert text.startswith("ERROR: Pandas failed to read input binary data b'a,b,c\\n1.5,2.25")
    assert text.endswith(f"... ({len(data)} bytes in all)")
    assert len(r.content) < 1000
    time.sleep(0.5)
    longest = max(len(line) for line in server.logs().splitlines())
    assert longest < 3000


def test_small_malformed_body_is_quoted_whole_as_drum_does(server: ServerProcess) -> None:
    data = b"a,b\n1,2\n1,2,3\n"
    r = httpx.post(server.url + "/predict/", content=data, headers=CSV_HEADERS, timeout=30)
    assert r.status_code == 422
    assert r.json() == {"message": f"ERROR: Pandas failed to read input binary data {data!r}"}

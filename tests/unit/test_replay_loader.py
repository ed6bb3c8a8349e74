"""Reading replay input: recordings, the hand-written form, and bad lines."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tandem.replay.loader import LineError, load_requests, parse_line


def _recording(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "time": "2025-01-01T00:00:00.000+00:00",
        "request_id": "abc",
        "server_type": "flask",
        "process_server": "gunicorn",
        "target_type": "regression",
        "pid": 1,
        "route": "predict",
        "endpoint": "/predict/",
        "method": "POST",
        "path": "/pfx/predict",
        "query": {"a": ["1", "2"], "b": ["x"]},
        "latency_seconds": 0.0123,
        "request": {
            "content_type": "text/csv",
            "headers": {"Content-Type": "text/csv", "X-Trace": "t", "Host": "h:1"},
            "body": "a,b\n1,2\n",
            "body_encoding": "utf-8",
            "body_size": 8,
        },
        "response": {
            "status": 200,
            "content_type": "application/json",
            "headers": {"X-Drum-Version": "1", "Content-Type": "application/json"},
            "stream": False,
            "body": '{"predictions":[3.0]}',
            "body_encoding": "utf-8",
            "body_size": 21,
        },
    }
    doc.update(overrides)
    return doc


def test_recording_line() -> None:
    req = parse_line(json.dumps(_recording()), "rec.jsonl", 7)
    assert req.label == "rec.jsonl:7"
    assert (req.method, req.path, req.endpoint) == ("POST", "/pfx/predict", "/predict/")
    assert req.route_key == "POST /predict/"
    assert req.query == (("a", "1"), ("a", "2"), ("b", "x"))
    assert req.headers == (("Content-Type", "text/csv"), ("X-Trace", "t"))  # no Host
    assert req.body == b"a,b\n1,2\n"
    assert req.request_id == "abc"
    assert req.expected is not None
    assert req.expected.status == 200
    assert req.expected.body == b'{"predictions":[3.0]}'
    assert req.expected.latency_seconds == 0.0123
    assert ("X-Drum-Version", "1") in (req.expected.headers or ())


def test_recording_with_binary_bodies_and_a_stream() -> None:
    raw = bytes([0xFF, 0x00, 0x80])
    doc = _recording()
    doc["request"].update(body=base64.b64encode(raw).decode(), body_encoding="base64")
    doc["response"].update(stream=True, body=None, body_encoding=None, body_size=None)
    req = parse_line(json.dumps(doc))
    assert req.body == raw
    assert req.expected is not None
    assert req.expected.stream and req.expected.body is None


def test_hand_written_forms() -> None:
    req = parse_line('{"path": "/predict/", "headers": {"Content-Type": "text/csv"}, "body": "a"}')
    assert (req.method, req.body, req.expected, req.endpoint) == ("POST", b"a", None, "/predict/")
    req = parse_line('{"method": "post", "path": "/predictions", "json": {"x": [1]}}')
    assert req.method == "POST" and req.body == b'{"x":[1]}'
    assert req.headers == (("Content-Type", "application/json"),)
    assert req.endpoint == "/predictions/"
    req = parse_line('{"path": "/custom/route", "query": "a=1&b=&a=3", "body_base64": "/w=="}')
    assert req.query == (("a", "1"), ("b", ""), ("a", "3"))
    assert req.body == b"\xff" and req.endpoint == "/custom/route"
    req = parse_line('{"path": "/x", "content_type": "text/plain", "query": [["k", 1]]}')
    assert req.headers == (("Content-Type", "text/plain"),) and req.query == (("k", "1"),)
    req = parse_line(
        '{"path": "/predict/", "body": "a\\n", '
        '"response": {"status": 200, "json": {"predictions": [1]}}}'
    )
    assert req.expected is not None
    assert req.expected.content_type == "application/json"
    assert req.expected.body == b'{"predictions":[1]}'
    assert req.expected.headers is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"method": "POST"}', "missing required field 'path'"),
        ('{"path": "predict"}', "path must be a string starting with '/'"),
        ('{"path": "/p?x=1"}', "give query parameters in 'query'"),
        ('{"path": "/p", "method": "FETCH"}', "method must be one of"),
        ('{"path": "/p", "bdy": "x"}', "unknown field(s) bdy"),
        ('{"path": "/p", "body": "x", "json": 1}', "give only one of"),
        ('{"path": "/p", "body": 1}', "body must be a string"),
        ('{"path": "/p", "body_base64": "***"}', "not valid base64"),
        ('{"path": "/p", "headers": "x"}', "headers must be an object"),
        ('{"path": "/p", "query": 3}', "query must be"),
        ('{"path": "/p", "response": {"status": 99}}', "response.status must be an HTTP status"),
        ('{"path": "/p", "content_type": "a", "headers": {"content-type": "b"}}', "either"),
        ('{"schema_version": 99, "path": "/p"}', "unsupported schema_version 99"),
        ('{"schema_version": "1"}', "schema_version must be an integer"),
    ],
)
def test_bad_lines(line: str, reason: str) -> None:
    with pytest.raises(LineError) as info:
        parse_line(line)
    assert reason in str(info.value)


def test_recording_without_its_request_body_cannot_be_replayed() -> None:
    doc = _recording()
    doc["request"].update(body=None, body_encoding=None, body_size=5_000_000, omitted=True)
    with pytest.raises(LineError, match="over the recording limit"):
        parse_line(json.dumps(doc))


def test_load_reports_bad_lines_with_numbers_and_keeps_going(tmp_path: Path) -> None:
    good = json.dumps(_recording())
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        "\n".join(
            [
                "# a comment",
                good,
                "",
                "{broken",
                '{"path": "/predict/", "body": "a,b\\n1,2\\n"}',
                '{"schema_version": 2}',
            ]
        ).encode()
        + b"\n\xff\xfe\n"
    )
    loaded = load_requests([path, tmp_path / "missing.jsonl"])
    assert [r.line for r in loaded.requests] == [2, 5]
    assert [(b.line, b.reason.split(":")[0]) for b in loaded.bad_lines] == [
        (4, "not valid JSON"),
        (6, "unsupported schema_version 2 (this version of tandem reads 1 to 1)"),
        (7, "line is not valid UTF-8"),
        (0, "cannot read file"),
    ]
    assert loaded.bad_lines[-1].source.endswith("missing.jsonl")

"""Request recording in one process: redaction, encoding, configuration, appending, rotation."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.core.http import Headers, QueryDict, Request, Response
from tandem.core.routes import ROUTES
from tandem.errors import RuntimeParameterError
from tandem.observability.recording import (
    DEFAULT_FILE,
    JsonlAppender,
    Recorder,
    RecordingConfig,
    decode_body,
    encode_body,
    flush_all,
    is_sensitive_header,
    recordable_headers,
)
from tandem.settings import ServeSettings

PREDICT = next(r for r in ROUTES if r.name == "predict")


def _dropped() -> float:
    from tandem.observability.metrics import RECORDING_DROPPED

    (family,) = RECORDING_DROPPED.collect()
    return next(s.value for s in family.samples if s.name.endswith("_total"))


def _request(body: bytes = b"a,b\n1,2\n", **headers: str) -> Request:
    pairs = [("Content-Type", "text/csv"), *headers.items()]
    return Request(
        "POST",
        "/predict/",
        Headers.from_pairs(pairs),
        QueryDict([("x", "1"), ("x", "2")]),
        body,
        request_id="rid-1",
    )


def _recorder(tmp_path: Path, **config: object) -> Recorder:
    settings = ServeSettings(code_dir=tmp_path)
    options: dict[str, object] = {"path": str(tmp_path / "rec.jsonl"), "sample_rate": 1.0}
    options.update(config)
    return Recorder(settings, RecordingConfig(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "X-Auth",
        "X-Auth-Token",
        "X-Upstream-Token",
        "X-Client-Secret",
        "X-Datarobot-Api-Key",
        "X-Apikey",
        "X-Session-Id",
    ],
)
def test_sensitive_headers(name: str) -> None:
    assert is_sensitive_header(name)


def test_recordable_headers() -> None:
    pairs = [
        ("Content-Type", "text/csv"),
        ("Authorization", "Bearer x"),
        ("Host", "h"),
        ("Content-Length", "3"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Trace", "a"),
        ("x-trace", "b"),
        ("X-Model-Key", "k"),
    ]
    assert recordable_headers(pairs) == {
        "Content-Type": "text/csv",
        "X-Trace": "a,b",
        "X-Model-Key": "k",
    }
    assert "X-Model-Key" not in recordable_headers(pairs, ["x-model-key"])
    assert not is_sensitive_header("X-Request-ID")
    assert not is_sensitive_header("Content-Type")


def test_body_encoding_round_trips() -> None:
    assert encode_body("é,ü\n".encode()) == ("é,ü\n", "utf-8")
    raw = bytes([0xFF, 0xFE, 0x00])
    text, encoding = encode_body(raw)
    assert encoding == "base64" and base64.b64decode(text) == raw
    assert decode_body(text, encoding) == raw
    with pytest.raises(ValueError, match="unknown body_encoding"):
        decode_body("x", "gzip")


def test_config_from_params() -> None:
    assert RecordingConfig.from_params({}) is None
    assert RecordingConfig.from_params({"DRUM_RECORD_REQUESTS": "false"}) is None
    config = RecordingConfig.from_params({"DRUM_RECORD_REQUESTS": "true"})
    assert config == RecordingConfig()
    assert config.path == DEFAULT_FILE and config.sample_rate == 0.01
    config = RecordingConfig.from_params(
        {
            "MLOPS_RUNTIME_PARAM_DRUM_RECORD_REQUESTS": '{"type": "boolean", "payload": true}',
            "DRUM_RECORD_SAMPLE_RATE": "0.5",
            "DRUM_RECORD_FILE": "/tmp/x.jsonl",
            "DRUM_RECORD_MAX_BYTES": "1000",
            "DRUM_RECORD_BACKUP_COUNT": "0",
            "DRUM_RECORD_QUEUE_SIZE": "3",
            "DRUM_RECORD_MAX_BODY_BYTES": "10",
            "DRUM_RECORD_EXCLUDE_HEADERS": "X-Model-Key, X-Other",
        }
    )
    assert config == RecordingConfig(
        path="/tmp/x.jsonl",
        sample_rate=0.5,
        max_bytes=1000,
        backup_count=0,
        queue_size=3,
        max_body_bytes=10,
        exclude_headers=("X-Model-Key", "X-Other"),
    )
    for name, value in [("DRUM_RECORD_SAMPLE_RATE", "1.5"), ("DRUM_RECORD_QUEUE_SIZE", "0")]:
        with pytest.raises(RuntimeParameterError, match=name):
            RecordingConfig.from_params({"DRUM_RECORD_REQUESTS": "1", name: value})


def test_record_and_flush(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    request = _request(Authorization="Bearer secret", X_Ignored="x", **{"X-Trace": "t"})
    response = Response(200, b'{"predictions":[3.0]}', "application/json", [("X-Request-ID", "r")])
    recorder.record(PREDICT, request, response, 0.25)
    recorder.record(PREDICT, _request(b"\xff\x00"), Response(200, iter([b"x"]), "text/plain"), 0.1)
    assert recorder.flush(5)
    first, second = (json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines())
    assert first["schema_version"] == 1
    assert first["request_id"] == "rid-1" and first["pid"] == os.getpid()
    assert (first["route"], first["endpoint"], first["path"]) == (
        "predict",
        "/predict/",
        "/predict/",
    )
    assert first["query"] == {"x": ["1", "2"]}
    assert first["latency_seconds"] == 0.25
    assert first["server_type"] == "fastapi" and first["process_server"] == "uvicorn"
    assert first["request"] == {
        "content_type": "text/csv",
        "headers": {"Content-Type": "text/csv", "X-Trace": "t"},
        "body": "a,b\n1,2\n",
        "body_encoding": "utf-8",
        "body_size": 8,
    }
    assert first["response"] == {
        "status": 200,
        "content_type": "application/json",
        "headers": {"X-Request-ID": "r", "Content-Type": "application/json"},
        "stream": False,
        "body": '{"predictions":[3.0]}',
        "body_encoding": "utf-8",
        "body_size": 21,
    }
    assert second["request"]["body_encoding"] == "base64"
    assert base64.b64decode(second["request"]["body"]) == b"\xff\x00"
    assert second["response"]["stream"] is True and second["response"]["body"] is None


def test_flush_all_drains_every_recorder(tmp_path: Path) -> None:
    first = _recorder(tmp_path, path=str(tmp_path / "a.jsonl"))
    second = _recorder(tmp_path, path=str(tmp_path / "b.jsonl"))
    for recorder in (first, second, first):
        recorder.record(PREDICT, _request(), Response(200, b"{}"), 0.1)
    assert flush_all(5)
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 1


def test_sampling_zero_records_nothing(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, sample_rate=0.0)
    recorder.record(PREDICT, _request(), Response(200, b"{}"), 0.1)
    assert recorder.flush(1)
    assert not (tmp_path / "rec.jsonl").exists()


def test_large_bodies_are_omitted_but_sized(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, max_body_bytes=4)
    recorder.record(PREDICT, _request(b"0123456789"), Response(200, b"{}"), 0.1)
    assert recorder.flush(5)
    (doc,) = [json.loads(x) for x in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert doc["request"]["omitted"] is True and doc["request"]["body"] is None
    assert doc["request"]["body_size"] == 10
    assert doc["response"]["body"] == "{}"


def test_unwritable_file_counts_drops_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    recorder = _recorder(tmp_path, path=str(blocker / "rec.jsonl"))
    before = _dropped()
    for _ in range(3):
        recorder.record(PREDICT, _request(), Response(200, b"{}"), 0.1)
    assert recorder.flush(5)
    assert _dropped() - before == 3


def test_full_disk_drops_and_counts(tmp_path: Path) -> None:
    """Writes to /dev/full fail with ENOSPC, as on a full disk."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    link = tmp_path / "rec.jsonl"
    link.symlink_to("/dev/full")
    recorder = _recorder(tmp_path, path=str(link))
    before = _dropped()
    for _ in range(4):
        recorder.record(PREDICT, _request(), Response(200, b"{}"), 0.1)
    assert recorder.flush(5)
    assert _dropped() - before == 4
    appender = JsonlAppender(str(link), 0, 0)
    assert appender.write_lines([b"{}\n", b"{}\n"]) == 0
    assert isinstance(appender.last_error, OSError)


def test_forked_child_starts_its_own_writer(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    recorder.record(PREDICT, _request(), Response(200, b"{}"), 0.1)  # parent's writer
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            recorder.record(PREDICT, _request(), Response(201, b"{}"), 0.1)
            status = 0 if recorder.flush(5) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.flush(5)
    docs = [json.loads(x) for x in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert sorted((d["pid"], d["response"]["status"]) for d in docs) == sorted(
        [(os.getpid(), 200), (pid, 201)]
    )


def _lines(path: Path) -> Iterator[str]:
    rotated = path.parent.glob(path.name + ".[0-9]*")
    for p in [*sorted(rotated, key=lambda p: -int(p.suffix[1:])), path]:  # oldest first
        if p.exists():
            data = p.read_text()
            assert not data or data.endswith("\n")
            yield from data.splitlines()


def test_appenders_in_several_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    writers, per_writer = 4, 300
    children = []
    for w in range(writers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 1
            try:
                appender = JsonlAppender(str(path), max_bytes=20_000, backup_count=1000)
                for i in range(per_writer):
                    line = json.dumps({"w": w, "i": i, "pad": "x" * (i % 97)}).encode() + b"\n"
                    assert appender.write_lines([line]) == 1
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    docs = [json.loads(line) for line in _lines(path)]
    assert sorted((d["w"], d["i"]) for d in docs) == [
        (w, i) for w in range(writers) for i in range(per_writer)
    ]
    rotated = list(tmp_path.glob("shared.jsonl.*[0-9]"))
    assert rotated
    for p in [*rotated, path]:
        assert p.stat().st_size <= 20_000


def test_rotation_keeps_backup_count_files(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    appender = JsonlAppender(str(path), max_bytes=100, backup_count=2)
    for i in range(20):
        appender.write_lines([json.dumps({"i": i, "pad": "y" * 30}).encode() + b"\n"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r.jsonl", "r.jsonl.1", "r.jsonl.2", "r.jsonl.lock"]
    numbers = [json.loads(line)["i"] for line in _lines(path)]
    assert numbers == sorted(numbers) and numbers[-1] == 19  # newest kept, in order
    # A single line longer than the limit still gets written, alone in its file.
    appender.write_lines([json.dumps({"big": "z" * 300}).encode() + b"\n"])
    assert json.loads(path.read_text())["big"] == "z" * 300
    # backup_count 0 truncates instead of keeping files.
    single = JsonlAppender(str(tmp_path / "s.jsonl"), max_bytes=100, backup_count=0)
    for i in range(10):
        single.write_lines([json.dumps({"i": i, "pad": "y" * 30}).encode() + b"\n"])
    assert not list(tmp_path.glob("s.jsonl.[0-9]*"))
    assert json.loads((tmp_path / "s.jsonl").read_text().splitlines()[-1])["i"] == 9

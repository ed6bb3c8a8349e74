"""End-to-end: chat completions reported to MLOps on every stack, as DRUM 1.18.1 reports them.

A real ``tandem server --monitor`` serves ``tests/fixtures/models/chat_monitored`` (a
``textgeneration`` model with a ``chat`` hook; ``TARGET_NAME`` set, as DRUM requires) with a
filesystem spool, and is asked :data:`CASES` one after the other: answered and streamed chats,
a hook that raises, a hook that answers no chat completion, a stream that breaks, an empty
stream, a prompt made of content parts and a request without an association id. After each
request the spool is read back with DataRobot's library (as its agent reads it) until it holds
as many new records as DRUM wrote for that request; those records, less their timestamps and
execution times, must be DRUM's.

DRUM's records are in ``tests/fixtures/drum_answers/mlops_chat.json``, recorded with::

    .venv/bin/python -m tests.test_mlops_chat_e2e --record

which serves the same model with ``bench/.drum-venv/bin/drum server --code-dir D --target-type
textgeneration --monitor --deployment-id D --model-id M --monitor-settings <filesystem spool>``
(its default stack, ``TARGET_NAME=answer``), asks the same requests and reads its spool the same
way. DRUM's venv has no ``openai`` (the model's import), so the recording puts links to this
venv's ``openai`` and the dependencies DRUM's venv lacks on DRUM's ``PYTHONPATH``. With
``bench/.drum-venv`` present, :func:`test_recorded_drum_records_are_current` asks DRUM again.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mlops_support import SpooledRecord, channel, read_spool
from tests.support import FIXTURES, SERVER_TYPES, ServerProcess, fixture_dir
from tests.test_mlops_e2e import wait_outcome, workers_for
from tests.test_task_interfaces_e2e import DRUM, DRUM_VERSION, DrumServer, _drum_version

pytestmark = pytest.mark.e2e

MODEL = "chat_monitored"
ENV = {"TARGET_NAME": "answer"}
ANSWERS_FILE = FIXTURES.parent / "drum_answers" / "mlops_chat.json"
#: What a generated association id is recorded as (it is the answer's ``datarobot_association_id``).
GENERATED = "<generated: the answer's datarobot_association_id>"
#: The streamed case waits 0.1 s before each of its last three chunks.
STREAMED_AT_LEAST_MS = 300.0


@dataclass(frozen=True)
class ChatCase:
    """One chat request: an id for the recording, and its JSON body."""

    id: str
    params: dict[str, Any]


def _user(text: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


CASES = (
    ChatCase(
        "answered",
        {
            "model": "echo",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is MLOps?"},
            ],
            "datarobot_association_id": "assoc-answered",
        },
    ),
    ChatCase(
        "streamed",
        {
            "model": "slow",
            "stream": True,
            "messages": _user("take your time"),
            "datarobot_association_id": "assoc-streamed",
        },
    ),
    ChatCase(
        "hook-fails",
        {"model": "fail", "messages": _user("boom"), "datarobot_association_id": "assoc-fails"},
    ),
    ChatCase(
        "not-a-chat",
        {"model": "not-a-chat", "messages": _user("hi"), "datarobot_association_id": "assoc-nac"},
    ),
    ChatCase(
        "content-parts",
        {
            "model": "echo",
            "messages": _user(
                [
                    {"type": "text", "text": "Describe these"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                ]
            ),
            "datarobot_association_id": "assoc-parts",
        },
    ),
    ChatCase(
        "stream-breaks",
        {
            "model": "fail-mid-stream",
            "stream": True,
            "messages": _user("cut me off"),
            "datarobot_association_id": "assoc-breaks",
        },
    ),
    ChatCase(
        "empty-stream",
        {
            "model": "empty",
            "stream": True,
            "messages": _user("say nothing"),
            "datarobot_association_id": "assoc-empty",
        },
    ),
    ChatCase("generated-id", {"model": "echo", "messages": _user("no id given")}),
)


def monitor_args(spool: Path) -> list[str]:
    return [
        "--target-type",
        "textgeneration",
        "--monitor",
        "--deployment-id",
        "D",
        "--model-id",
        "M",
        "--monitor-settings",
        channel(spool),
    ]


def send(client: httpx.Client, case: ChatCase) -> tuple[int, str | None]:
    """Ask one chat (reading a stream to its end, or to where it breaks): the status and the
    answer's association id (None for a stream or an error)."""
    with client.stream("POST", "/v1/chat/completions", json=case.params) as resp:
        try:
            body = resp.read()
        except httpx.TransportError:
            # A stream that breaks ends differently on each server; only its reports matter.
            return resp.status_code, None
    if resp.status_code == 200 and not case.params.get("stream"):
        return resp.status_code, json.loads(body)["datarobot_association_id"]
    return resp.status_code, None


def comparable(record: SpooledRecord, generated: str | None) -> dict[str, Any]:
    """A record as compared with DRUM's: all but its timestamp and execution time."""
    payload = {k: v for k, v in record.payload.items() if k not in ("timestamp", "executionTime")}
    if generated is not None and payload.get("associationIds") == [generated]:
        payload["associationIds"] = [GENERATED]
    return {"type": record.data_type, "deploymentId": record.deployment_id, **payload}


def wait_records(spool: Path, count: int, timeout: float = 20.0) -> list[SpooledRecord]:
    """The spool's records once it holds at least ``count`` (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_spool(spool)
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, f"{len(records)} records spooled, not {count}"
        time.sleep(0.05)


def ask_all(
    url: str, spool: Path, expected: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Ask every case in turn. Returns each case's status and new records, and the execution
    times of its stats records.

    With ``expected`` (DRUM's answers) each case waits for as many records as DRUM wrote; without
    it (DRUM itself, which reports inside the request) the spool is read once the answer is in.
    """
    answers: dict[str, Any] = {}
    times: dict[str, list[float]] = {}
    seen = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for case in CASES:
            status, association_id = send(client, case)
            if expected is None:
                time.sleep(0.5)
                records = read_spool(spool)
            else:
                records = wait_records(spool, seen + len(expected[case.id]["records"]))
            new, seen = records[seen:], len(records)
            generated = None if case.params.get("datarobot_association_id") else association_id
            answers[case.id] = {
                "status": status,
                "records": [comparable(r, generated) for r in new],
            }
            times[case.id] = [
                r.payload["executionTime"] for r in new if r.data_type == "DEPLOYMENT_STATS"
            ]
    return answers, times


def check_times(times: dict[str, list[float]]) -> None:
    """Every stats record has a positive execution time; a stream's covers the whole stream."""
    assert all(t > 0 for ts in times.values() for t in ts), times
    assert times["streamed"][0] >= STREAMED_AT_LEAST_MS, times


def drum_answers() -> dict[str, Any]:
    """The recorded file: ``answers`` by case id, and how they were recorded."""
    recorded: dict[str, Any] = json.loads(ANSWERS_FILE.read_text())
    return recorded


# -- the test -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_chats_are_reported_as_drum_reports_them(tmp_path: Path, server_type: str) -> None:
    expected = drum_answers()["answers"]
    code_dir = fixture_dir(MODEL, tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    args = monitor_args(spool)
    workers = workers_for(server_type)
    if workers > 1:
        args += ["--max-workers", str(workers)]
    server = ServerProcess(code_dir, server_type, args=args, env=ENV)
    with server:
        answers, times = ask_all(server.url, spool, expected)
        counts = wait_outcome(server, "sent", len(CASES))
        assert counts == {"sent": len(CASES), "failed": 0, "dropped": 0}
    assert answers == expected
    check_times(times)
    # Nothing arrived after the last case's records (the server flushed its queue on exit).
    total = sum(len(answer["records"]) for answer in expected.values())
    assert len(read_spool(spool)) == total


def test_a_broken_spool_never_fails_a_chat(tmp_path: Path) -> None:
    """Chats are answered in full while every report of them fails."""
    code_dir = fixture_dir(MODEL, tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    with ServerProcess(code_dir, "fastapi", args=monitor_args(spool), env=ENV) as server:
        shutil.rmtree(spool)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            statuses = [send(client, case)[0] for case in CASES[:3]]
            streamed = client.post("/v1/chat/completions", json=CASES[1].params).text
        assert statuses == [200, 200, 500]
        assert '"content":" time"' in streamed and streamed.endswith("data: [DONE]\n\n")
        counts = wait_outcome(server, "failed", 4)
        assert counts["sent"] == 0 and counts["dropped"] == 0


# -- DRUM -----------------------------------------------------------------------------------------


def _openai_links(dest: Path) -> Path:
    """A directory of links to this venv's ``openai`` and those of its dependencies that DRUM's
    venv lacks, for DRUM's ``PYTHONPATH``."""
    dest.mkdir(parents=True, exist_ok=True)
    drum_python = DRUM.parent / "python"
    wanted, done = ["openai"], set()
    while wanted:
        name = wanted.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in done:
            continue
        done.add(key)
        has = subprocess.run(
            [str(drum_python), "-c", f"import importlib.metadata as m; m.version({name!r})"],
            capture_output=True,
        )
        if key != "openai" and has.returncode == 0:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform: the import check below tells
        for entry in {Path(str(f)).parts[0] for f in dist.files or [] if ".." not in str(f)}:
            link = dest / entry
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(entry))))
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                wanted.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    check = subprocess.run(
        [str(drum_python), "-c", "from openai.types.chat import ChatCompletion"],
        env={**os.environ, "PYTHONPATH": str(dest)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    return dest


def record_drum(root: Path) -> dict[str, Any]:
    """Serve the model with DRUM (``bench/.drum-venv``), ask every case, read its spool."""
    code_dir = fixture_dir(MODEL, root)
    spool = root / "spool"
    spool.mkdir()
    env = {**ENV, "PYTHONPATH": str(_openai_links(root / "openai-links"))}
    server = DrumServer(code_dir, monitor_args(spool))
    server.extra_env.update(env)
    with server:
        answers, times = ask_all(server.url, spool, None)
    check_times(times)
    return {
        "recorded_with": f"datarobot-drum {DRUM_VERSION} (its default stack), TARGET_NAME=answer, "
        "a filesystem spool read back with datarobot-mlops; timestamps and execution times "
        "left out; see tests/test_mlops_chat_e2e.py for how",
        "answers": answers,
    }


def test_recorded_drum_records_are_current(tmp_path: Path) -> None:
    """With DRUM at hand, the recorded file must still say what DRUM reports."""
    if _drum_version() != DRUM_VERSION:
        pytest.skip(f"bench/.drum-venv with datarobot-drum {DRUM_VERSION} is not installed")
    assert record_drum(tmp_path)["answers"] == drum_answers()["answers"]


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_mlops_chat_e2e --record")
    if _drum_version() != DRUM_VERSION:
        sys.exit(f"needs bench/.drum-venv with datarobot-drum {DRUM_VERSION}")
    os.environ.pop("DRUM_SERVER_TYPE", None)
    with tempfile.TemporaryDirectory() as tmp:
        recorded = record_drum(Path(tmp))
    ANSWERS_FILE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {ANSWERS_FILE}")

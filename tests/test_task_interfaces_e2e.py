"""Models on DRUM's custom task interfaces, on every stack and against DRUM 1.18.1 itself.

The models are ``tests/task_models.py``'s, built at test time: a ``custom.py`` whose
``CustomTask`` subclasses ``TransformerInterface`` or one of the estimator interfaces, fitted
and saved with ``CustomTask().fit(X, y).save(code_dir)``. Every stack (Flask dev server,
Gunicorn, Uvicorn) must answer each request of ``TASK_REQUESTS`` with the same bytes, and with
what DRUM answers: the same status and body bytes (a multipart ``/transform/`` answer, whose
boundary DRUM draws at random, is compared part by part).

DRUM's answers come from DRUM itself when ``bench/.drum-venv`` exists (``bench/run.py`` creates
it with ``datarobot-drum==1.18.1``): each model is served once with ``drum server`` on DRUM's
default stack (Gunicorn) and asked the same requests. Without it, the answers recorded in
``tests/fixtures/drum_answers/custom_tasks.json`` are used. That file was recorded with DRUM
1.18.1 by this module's ``record`` step::

    .venv/bin/python -m tests.test_task_interfaces_e2e --record

which builds the models with Tandem's venv (so DRUM unpickles artifacts written against Tandem's
interface classes: the pickle names only ``custom.CustomTask``), serves each with
``bench/.drum-venv/bin/drum server --code-dir D --target-type T ... --address 127.0.0.1:PORT``
(``DRUM_SERVER_TYPE`` and runtime parameters unset) and writes the answers.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO, SERVER_TYPES, ServerProcess, stop_process_group
from tests.task_models import (
    ARGS,
    DRUM_ANSWERS_FILE,
    TASK_REQUESTS,
    TaskRequest,
    build_task_model,
    drum_answers,
    task_kinds,
)

pytestmark = pytest.mark.e2e

DRUM = REPO / "bench" / ".drum-venv" / "bin" / "drum"
DRUM_VERSION = "1.18.1"
NOT_INHERITING = "The CustomTask class must inherit from the CustomTaskInterface"


class DrumServer(ServerProcess):
    """DataRobot's ``drum server`` (``bench/.drum-venv``) on DRUM's default stack, Gunicorn."""

    def __init__(self, code_dir: Path, args: list[str]) -> None:
        super().__init__(code_dir, None, args=args, startup_timeout=120.0)

    def command(self) -> list[str]:
        """``drum server`` with the same flags ``tandem server`` gets."""
        return [
            str(DRUM),
            "server",
            "--code-dir",
            str(self.code_dir),
            "--address",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]


def _parts(body: bytes, content_type: str) -> dict[str, dict[str, str | None]]:
    """A multipart body's parts by name: filename, content type and text."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts: dict[str, dict[str, str | None]] = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[str(part.get_param("name", header="content-disposition"))] = {
            "filename": part.get_filename(),
            "content_type": part.get("content-type"),
            "data": payload.decode(),
        }
    return parts


def send(client: httpx.Client, request: TaskRequest) -> httpx.Response:
    """Send ``request`` as it is (multipart when it has files)."""
    files = [(name, (fname, data)) for name, fname, data in request.files] or None
    return client.post(
        request.path,
        content=request.body if files is None else None,
        files=files,
        headers=dict(request.headers),
    )


def comparable(resp: httpx.Response) -> dict[str, Any]:
    """An answer as compared with DRUM's: status, content type and body, or body parts."""
    content_type = resp.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        return {
            "status": resp.status_code,
            "content_type": content_type.split(";")[0],
            "parts": _parts(resp.content, content_type),
        }
    return {"status": resp.status_code, "content_type": content_type, "body": resp.text}


def _requests(kind: str) -> list[TaskRequest]:
    return [r for r in TASK_REQUESTS if r.kind == kind]


def _start_up_failure(server: ServerProcess) -> str:
    """The log of a server that must exit during start-up."""
    try:
        server.start()
    except RuntimeError as exc:
        return str(exc)
    finally:
        server.stop()
    raise AssertionError(f"started although loading must fail:\n{server.logs()}")


def drum_start_up_failure(code_dir: Path, args: list[str], timeout: float = 60.0) -> str:
    """DRUM's output once its model fails to load. Its Gunicorn master does not exit then (it
    boots a new worker, which fails again), so the output is watched, not the exit status."""
    server = DrumServer(code_dir, args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env.pop("DRUM_SERVER_TYPE", None)
    with server.log_path.open("wb") as log:
        proc = subprocess.Popen(
            server.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if "Traceback" in server.logs():
                    time.sleep(1.0)  # the rest of the traceback
                    break
                time.sleep(0.2)
            return server.logs()
        finally:
            stop_process_group(proc)


def record_drum(root: Path) -> dict[str, Any]:
    """Ask DRUM (``bench/.drum-venv``) every request; also its start-up failure's message."""

    def serve(kind: str) -> dict[str, Any]:
        code_dir = build_task_model(root / kind, kind)
        with DrumServer(code_dir, list(ARGS[kind])) as server:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                return {r.id: comparable(send(client, r)) for r in _requests(kind)}

    with ThreadPoolExecutor(len(task_kinds())) as pool:
        answers: dict[str, Any] = {}
        for found in pool.map(serve, task_kinds()):
            answers.update(found)
    failing = build_task_model(root / "not_inheriting", "not_inheriting")
    assert NOT_INHERITING in drum_start_up_failure(failing, list(ARGS["not_inheriting"]))
    return {
        "recorded_with": f"datarobot-drum {DRUM_VERSION} (gunicorn, its default stack); see "
        "tests/test_task_interfaces_e2e.py for how",
        "answers": {r.id: answers[r.id] for r in TASK_REQUESTS},
        "start_up_failure": NOT_INHERITING,
    }


def _drum_version() -> str | None:
    if not DRUM.exists():
        return None
    found = sorted(DRUM.parent.parent.glob("lib/python*/site-packages/datarobot_drum-*.dist-info"))
    return found[0].name.removesuffix(".dist-info").split("-")[1] if found else None


@pytest.fixture(scope="module")
def drum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """DRUM's answers: live from ``bench/.drum-venv`` when it is there, else the recorded ones."""
    if _drum_version() == DRUM_VERSION:
        yield record_drum(tmp_path_factory.mktemp("drum"))
    else:
        yield drum_answers()


@pytest.mark.parametrize("kind", task_kinds())
def test_task_model_on_every_stack_answers_as_drum(
    kind: str, tmp_path: Path, drum: dict[str, Any]
) -> None:
    code_dir = build_task_model(tmp_path / kind, kind)
    servers = {st: ServerProcess(code_dir, st, args=list(ARGS[kind])) for st in SERVER_TYPES}
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(ServerProcess.start, servers.values()))
        for request in _requests(kind):
            raw: dict[str, tuple[int, str | None, bytes]] = {}
            for st, server in servers.items():
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    resp = send(client, request)
                raw[st] = (resp.status_code, resp.headers.get("content-type"), resp.content)
                answer = comparable(resp)
                expected = drum["answers"][request.id]
                assert answer == expected, (
                    f"{request.id} on {st}:\n tandem {answer}\n drum   {expected}\n"
                    f"{server.logs()[-2000:]}"
                )
            first = raw[SERVER_TYPES[0]]
            for st, other in raw.items():
                assert other == first, f"{request.id}: {SERVER_TYPES[0]} vs {st}"
        for st, server in servers.items():
            assert server.proc is not None and server.proc.poll() is None, (
                f"{st} died:\n{server.logs()}"
            )
    finally:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(ServerProcess.stop, servers.values()))


def test_custom_task_not_inheriting_the_interface_stops_every_stack(
    tmp_path: Path, drum: dict[str, Any]
) -> None:
    code_dir = build_task_model(tmp_path / "not_inheriting", "not_inheriting")
    servers = [
        ServerProcess(code_dir, st, args=list(ARGS["not_inheriting"])) for st in SERVER_TYPES
    ]
    with ThreadPoolExecutor(len(servers)) as pool:
        failures = list(pool.map(_start_up_failure, servers))
    for st, failure in zip(SERVER_TYPES, failures, strict=True):
        assert "server exited with 1 during start-up" in failure, f"{st}: {failure}"
        assert drum["start_up_failure"] in failure, f"{st}: {failure}"


def test_recorded_drum_answers_are_current(drum: dict[str, Any]) -> None:
    """With DRUM at hand, the recorded file must still say what DRUM answers."""
    if _drum_version() != DRUM_VERSION:
        pytest.skip(f"bench/.drum-venv with datarobot-drum {DRUM_VERSION} is not installed")
    assert drum_answers()["answers"] == drum["answers"]


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_task_interfaces_e2e --record")
    if _drum_version() != DRUM_VERSION:
        sys.exit(f"needs bench/.drum-venv with datarobot-drum {DRUM_VERSION}")
    os.environ.pop("DRUM_SERVER_TYPE", None)
    with tempfile.TemporaryDirectory() as tmp:
        recorded = record_drum(Path(tmp))
    DRUM_ANSWERS_FILE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DRUM_ANSWERS_FILE}")

"""Starting, probing and stopping the servers under test, one at a time, on 127.0.0.1.

Each server is started with ``start_new_session=True``, so it leads its own process group and
session; stopping it signals the whole group (SIGTERM, then SIGKILL after a grace period) and
then any straggler still in its session. ``ServerRegistry.stop_all`` is called from the harness's
``finally`` so nothing outlives a run, even one that failed or was interrupted.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import procfs

HOST = "127.0.0.1"

# Variables that would change how either server starts if they leaked in from the caller's shell.
_SCRUB_PREFIXES = ("MLOPS_RUNTIME_PARAM_", "DRUM_", "TANDEM_")
_SCRUB = {
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "CODE_DIR",
    "TARGET_TYPE",
    "ADDRESS",
    "MAX_WORKERS",
    "POSITIVE_CLASS_LABEL",
    "NEGATIVE_CLASS_LABEL",
    "CLASS_LABELS",
    "CLASS_LABELS_FILE",
    "WITH_ERROR_SERVER",
    "PRODUCTION",
    "URL_PREFIX",
    "TARGET_NAME",
    "CUSTOM_MODEL_WORKERS",
    "MLOPS_DEPLOYMENT_ID",
}


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration: implementation, stack and worker count."""

    impl: str  # "drum" or "tandem"
    stack: str  # "gunicorn", "flask" or "fastapi"
    workers: int

    @property
    def name(self) -> str:
        """Short id, e.g. ``tandem-fastapi-2w``."""
        return f"{self.impl}-{self.stack}-{self.workers}w"

    @property
    def label(self) -> str:
        """Human label, e.g. ``Tandem fastapi ×2``."""
        impl = "DRUM" if self.impl == "drum" else "Tandem"
        return f"{impl} {self.stack} ×{self.workers}"

    @property
    def ready_path(self) -> str:
        """Readiness route: ``/readyz`` on Tandem; DRUM has none, so its ``/``."""
        return "/" if self.impl == "drum" else "/readyz"


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: its code dir per side, target type and extra CLI flags."""

    name: str  # "regression", "binary", "echo"
    target_type: str
    drum_dir: Path
    tandem_dir: Path
    extra_args: tuple[str, ...] = ()

    def code_dir(self, impl: str) -> Path:
        """The code dir the given implementation serves."""
        return self.drum_dir if impl == "drum" else self.tandem_dir


@dataclass(frozen=True)
class Executables:
    """Where the two programs live."""

    drum: Path  # bench/.drum-venv/bin/drum
    tandem: Path  # /work/main/.venv/bin/tandem
    tandem_python: Path  # /work/main/.venv/bin/python
    tandem_src: Path | None = None  # run `python -m tandem` from this src/ instead

    def tandem_argv(self) -> list[str]:
        """How Tandem is invoked: its console script, or ``python -m tandem`` from a src dir."""
        if self.tandem_src is None:
            return [str(self.tandem)]
        return [str(self.tandem_python), "-m", "tandem"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def scrubbed_env() -> dict[str, str]:
    """The caller's environment without the variables that would change how a server starts."""
    return {
        k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)
    }


def server_env(spec: ServerSpec, exe: Executables) -> dict[str, str]:
    """The environment a server starts with: the caller's, scrubbed, plus its runtime params."""
    env = scrubbed_env()
    if spec.impl == "drum":
        env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = (
            '{"type":"string","payload":"' + spec.stack + '"}'
        )
        env["MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS"] = (
            '{"type":"numeric","payload":' + str(spec.workers) + "}"
        )
    else:
        env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = spec.stack
        env["MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS"] = str(spec.workers)
    if spec.impl == "tandem" and exe.tandem_src is not None:
        env["PYTHONPATH"] = str(exe.tandem_src)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_command(spec: ServerSpec, model: ModelSpec, exe: Executables, port: int) -> list[str]:
    """The command line that starts ``spec`` serving ``model`` on ``port``."""
    program = [str(exe.drum)] if spec.impl == "drum" else exe.tandem_argv()
    return [
        *program,
        "server",
        "--code-dir",
        str(model.code_dir(spec.impl)),
        "--target-type",
        model.target_type,
        "--address",
        f"{HOST}:{port}",
        *model.extra_args,
    ]


class ServerFailed(RuntimeError):
    """A server exited or never became ready."""


def preflight(specs: list[ServerSpec], model: ModelSpec, exe: Executables) -> None:
    """Fail fast, with the program's own error, when a server program cannot even start.

    Runs ``drum --version`` and ``tandem server ... --explain-server-type`` side by side.
    """
    procs = []
    for spec in specs:
        if spec.impl == "drum":
            cmd = [str(exe.drum), "--version"]
        else:
            cmd = [*server_command(spec, model, exe, 0), "--explain-server-type"]
        proc = subprocess.Popen(
            cmd,
            env=server_env(spec, exe),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append((cmd, proc))
    try:
        for cmd, proc in procs:
            output, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                tail = "\n".join(output.strip().splitlines()[-8:])
                raise ServerFailed(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@dataclass
class Answer:
    """One HTTP answer, as compared for byte identity."""

    status: int
    content_type: str
    body: bytes


def answer_differences(mine: Answer, theirs: Answer, who: tuple[str, str]) -> list[str]:
    """How two answers differ (status, Content-Type, body), each item naming ``who`` answered."""
    me, them = who
    problems = []
    if mine.status != theirs.status:
        problems.append(f"status {mine.status} ({me}) vs {theirs.status} ({them})")
    if mine.content_type != theirs.content_type:
        problems.append(f"Content-Type {mine.content_type!r} vs {theirs.content_type!r}")
    if mine.body != theirs.body:
        n = next(
            (i for i, (a, b) in enumerate(zip(mine.body, theirs.body, strict=False)) if a != b),
            min(len(mine.body), len(theirs.body)),
        )
        lo = max(0, n - 40)
        problems.append(
            f"body differs: {len(mine.body)} vs {len(theirs.body)} bytes, first difference at "
            f"byte {n}: {me} {mine.body[lo : n + 40]!r} vs {them} {theirs.body[lo : n + 40]!r}"
        )
    return problems


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One HTTP/1.1 request on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheader("Content-Type", ""), resp.read())
    finally:
        conn.close()


class RunningServer:
    """A started server: its process, port, log and start-up time."""

    def __init__(
        self, spec: ServerSpec, model: ModelSpec, exe: Executables, log_path: Path
    ) -> None:
        self.spec = spec
        self.model = model
        self.port = free_port()
        self.log_path = log_path
        self.command = server_command(spec, model, exe, self.port)
        self.startup_s: float | None = None
        self._log = open(log_path, "wb")  # closed in stop()
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            env=server_env(spec, exe),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The launcher's pid, which is also the server's process group and session id."""
        return self.proc.pid

    def wait_ready(self, timeout: float) -> float:
        """Poll the readiness route until it answers 200; return seconds since launch."""
        deadline = self._t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.spec.name} ({self.model.name}) exited with {self.proc.returncode}"
                    f" before it was ready; log tail:\n{self.log_tail()}"
                )
            try:
                if request(self.port, "GET", self.spec.ready_path, timeout=2.0).status == 200:
                    self.startup_s = time.monotonic() - self._t0
                    return self.startup_s
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{self.spec.name} ({self.model.name}) not ready after {timeout:.0f}s;"
                    f" log tail:\n{self.log_tail()}"
                )
            time.sleep(0.025)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by all of the server's processes."""
        return procfs.cpu_seconds(self.pid)

    def memory(self) -> dict[str, float | int]:
        """RSS/PSS (MB) summed over the server's processes."""
        return procfs.memory_mb(self.pid)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds."""
        try:
            stop_session(self.proc, grace)
        finally:
            self._log.close()


def stop_session(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a process started with ``start_new_session=True``, and everything in its session.

    SIGTERM to its process group, SIGKILL to the group after ``grace`` seconds, then SIGKILL to
    any straggler that changed process group but stayed in the session or the process tree.
    """
    pid = proc.pid
    _signal_group(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(pid, signal.SIGKILL)
    for st in procfs.server_processes(pid):
        if st.pid != pid:
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ServerRegistry:
    """Every server started by this run, so that all can be stopped in a ``finally``."""

    def __init__(self) -> None:
        self._live: list[RunningServer] = []

    def start(
        self, spec: ServerSpec, model: ModelSpec, exe: Executables, log_path: Path
    ) -> RunningServer:
        """Launch a server and remember it."""
        server = RunningServer(spec, model, exe, log_path)
        self._live.append(server)
        return server

    def stop(self, server: RunningServer) -> None:
        """Stop one server."""
        try:
            server.stop()
        finally:
            if server in self._live:
                self._live.remove(server)

    def stop_all(self) -> None:
        """Stop every server still running (called from ``finally``)."""
        while self._live:
            self.stop(self._live[-1])

"""Server-wide state shared by the supervisor and its workers through a directory.

The launcher creates the directory (``TANDEM_STATE_DIR``) before any worker exists and records
its own pid (``TANDEM_MASTER_PID``). Workers write a heartbeat file with their RSS; the
supervisor records worker exits in ``events.json``. Any worker can then answer ``/stats/`` and
``/metrics`` for the whole server, whichever worker the request lands on.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

STATE_ENV = "TANDEM_STATE_DIR"
MASTER_ENV = "TANDEM_MASTER_PID"
PROM_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_state_dir() -> Path:
    """Create the state directory for a server about to start and export it to workers.

    Must run before ``prometheus_client`` is imported, which picks multi-process mode from the
    environment at import time.
    """
    existing = os.environ.get(STATE_ENV)
    root = Path(existing) if existing else Path(tempfile.mkdtemp(prefix="tandem-state-"))
    (root / "workers").mkdir(parents=True, exist_ok=True)
    prom = root / "prometheus"
    prom.mkdir(exist_ok=True)
    for stale in prom.glob("*.db"):
        stale.unlink()
    os.environ[STATE_ENV] = str(root)
    os.environ[PROM_ENV] = str(prom)
    os.environ[MASTER_ENV] = str(os.getpid())
    return root


def state_dir() -> Path | None:
    """The server's state directory, or None when running without a launcher (tests)."""
    value = os.environ.get(STATE_ENV)
    return Path(value) if value else None


def master_pid() -> int:
    """The pid of the process that supervises the workers (this process when unsupervised)."""
    try:
        return int(os.environ.get(MASTER_ENV, ""))
    except ValueError:
        return os.getpid()


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


@dataclass
class WorkerExit:
    """How one worker ended, as the supervisor saw it."""

    pid: int
    killed: bool
    """Killed by SIGKILL (the kernel's OOM killer, or an operator)."""
    last_rss: int | None
    detail: str
    clean: bool = False
    """Shut down on purpose (graceful stop, max-requests recycling): not counted."""
    oom: bool = False
    """Killed by the kernel's OOM killer, on its evidence (see ``observability.oom``)."""


#: The counters ``events.json`` keeps: every unplanned worker exit is a restart; a SIGKILL is an
#: OOM kill only on the kernel's evidence, otherwise a plain kill.
EVENT_COUNTS = ("worker_restarts", "oom_kills", "worker_kills")


class Events:
    """Worker restarts, OOM kills and other kills since start (``events.json``, supervisor-side)."""

    def __init__(self, root: Path | None) -> None:
        self.path = root / "events.json" if root else None
        self._lock = threading.Lock()

    def read(self) -> dict[str, int]:
        """Current counts; zeros when nothing happened (or no state dir)."""
        data: dict[str, Any] = {}
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
        return {key: int(data.get(key, 0)) for key in EVENT_COUNTS}

    def record(self, exit_: WorkerExit, restarted: bool) -> dict[str, int]:
        """Count one worker exit (supervisor side) and return the new counts."""
        with self._lock:
            counts = self.read()
            if exit_.oom:
                counts["oom_kills"] += 1
            elif exit_.killed:
                counts["worker_kills"] += 1
            if restarted:
                counts["worker_restarts"] += 1
            if self.path is not None:
                _atomic_write(self.path, counts)
            return counts


class Heartbeat:
    """A worker's file with its pid and last RSS, refreshed in a daemon thread."""

    def __init__(self, root: Path, interval: float = 1.0) -> None:
        self.root = root / "workers"
        self.interval = interval
        self.pid = os.getpid()
        self._stop = threading.Event()

    @property
    def path(self) -> Path:
        """This worker's heartbeat file."""
        return self.root / f"{self.pid}.json"

    def beat(self) -> None:
        """Write the current RSS now."""
        rss = psutil.Process(self.pid).memory_info().rss
        _atomic_write(self.path, {"pid": self.pid, "rss": rss, "time": time.time()})

    def start(self) -> None:
        """Beat once, then every ``interval`` seconds until the process ends."""
        self.beat()
        threading.Thread(target=self._run, name="tandem-heartbeat", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except (OSError, psutil.Error):
                pass

    def stop(self, clean: bool = True) -> None:
        """Stop beating; a clean stop removes the file."""
        self._stop.set()
        if clean:
            self.path.unlink(missing_ok=True)


def last_rss(root: Path | None, pid: int) -> int | None:
    """The last RSS a (now dead) worker reported, and forget it."""
    if root is None:
        return None
    path = root / "workers" / f"{pid}.json"
    try:
        rss = int(json.loads(path.read_text())["rss"])
    except (OSError, ValueError, KeyError):
        return None
    path.unlink(missing_ok=True)
    return rss


def server_processes() -> tuple[psutil.Process, list[psutil.Process]]:
    """The supervising process and its worker processes (just this process when unsupervised)."""
    me = psutil.Process(os.getpid())
    pid = master_pid()
    if pid == me.pid:
        return me, []
    try:
        master = psutil.Process(pid)
        workers = [p for p in master.children(recursive=False) if p.is_running()]
    except psutil.Error:
        return me, []
    return master, workers

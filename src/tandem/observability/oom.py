"""Telling an out-of-memory kill from any other SIGKILL, on evidence only.

A worker that dies of SIGKILL was killed by *someone*: the kernel's OOM killer, an operator's
``kill -9``, an orchestrator. Only the first is an OOM kill, and the rollout treats one as an
immediate rollback (and ``DRUM_EXIT_ON_OOM`` stops the server), so it is attributed only when
the kernel says so:

- the cgroup's OOM-kill counter went up since the supervisor last looked: ``oom_kill`` in
  ``memory.events`` (cgroup v2, which counts the cgroup's descendants too) or in
  ``memory.oom_control`` (cgroup v1, this cgroup only);
- or, where it is readable (root), the kernel log names the worker's PID in an OOM kill
  (``Killed process <pid>`` / ``oom-kill:...,pid=<pid>,``).

Every other SIGKILL is counted as a plain kill.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Kernel log records read at most per look (a busy log is not read for ever).
_KMSG_MAX_RECORDS = 20_000


def _own_cgroups() -> dict[str, str]:
    """``{controller: path}`` from ``/proc/self/cgroup`` (``""`` is the v2 unified entry)."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            found[controller] = parts[2].strip()
    return found


def _read_oom_kill(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def counter_file() -> Path | None:
    """The file holding this process's cgroup OOM-kill counter, or None when there is none."""
    groups = _own_cgroups()
    candidates: list[Path] = []
    if (_CGROUP_ROOT / "cgroup.controllers").exists():  # v2 only
        rel = groups.get("", "/").lstrip("/")
        candidates += [_CGROUP_ROOT / rel / "memory.events", _CGROUP_ROOT / "memory.events"]
    if "memory" in groups:  # v1 (or hybrid): the memory controller's own hierarchy
        rel = groups["memory"].lstrip("/")
        v1 = _CGROUP_ROOT / "memory"
        candidates += [v1 / rel / "memory.oom_control", v1 / "memory.oom_control"]
    return next((c for c in candidates if _read_oom_kill(c) is not None), None)


def kernel_log_names(pid: int) -> bool:
    """Whether the kernel log records an OOM kill of ``pid`` (False when it cannot be read)."""
    pattern = re.compile(rf"(Killed process {pid} |oom-kill:.*[,:]pid={pid},)")
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        for _ in range(_KMSG_MAX_RECORDS):
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError:
                continue  # EPIPE: records overwritten while reading; go on with the next
            if pattern.search(record.decode("utf-8", "replace")):
                return True
        return False
    finally:
        os.close(fd)


class OomWitness:
    """Decides, per SIGKILLed worker, whether the kernel's OOM killer did it.

    Created in the supervising process before workers start, so the counter's starting value
    excludes kills from before this server existed.
    """

    def __init__(self, counter: Path | None = None, read_kernel_log: bool = True) -> None:
        self.counter = counter if counter is not None else counter_file()
        self.read_kernel_log = read_kernel_log
        self._seen = self._count()
        self._lock = threading.Lock()

    def _count(self) -> int | None:
        return None if self.counter is None else _read_oom_kill(self.counter)

    def was_oom(self, pid: int) -> bool:
        """True only on evidence that the OOM killer killed ``pid`` (call once per death)."""
        with self._lock:
            now = self._count()
            rose = now is not None and self._seen is not None and now > self._seen
            if now is not None:
                self._seen = now
        if rose:
            return True
        return self.read_kernel_log and kernel_log_names(pid)


_witness: OomWitness | None = None


def witness() -> OomWitness:
    """This process's witness, created on first use (call it before forking workers)."""
    global _witness
    if _witness is None:
        _witness = OomWitness()
    return _witness

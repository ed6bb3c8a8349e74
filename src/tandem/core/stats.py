"""``/stats/``: process and container memory in DRUM's shape (MiB floats), always valid JSON.

Beyond DRUM's keys: ``worker_info`` (per-worker RSS, restarts, OOM kills, other kills) and
``otel_info`` (spans ended, exported and failed exports over the whole server; null while the
server has traced nothing), both read by the rollout controller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from tandem.observability.state import Events, server_processes, state_dir

_MIB = 1024 * 1024
#: cgroup v1 reports "no limit" as this (2^63 rounded down to a page).
_V1_UNLIMITED = 9223372036854771712


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def container_memory() -> dict[str, int | None]:
    """Limit, usage and peak from cgroup v2 (nested path from /proc/self/cgroup) or v1."""
    v2_root = Path("/sys/fs/cgroup")
    if (v2_root / "cgroup.controllers").exists():
        rel = ""
        try:
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                if line.startswith("0::"):
                    rel = line[3:].strip().lstrip("/")
        except OSError:
            pass
        base = v2_root / rel if (v2_root / rel / "memory.current").exists() else v2_root
        return {
            "limit": _read_int(base / "memory.max"),
            "used": _read_int(base / "memory.current"),
            "max_used": _read_int(base / "memory.peak"),
        }
    v1 = Path("/sys/fs/cgroup/memory")
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit >= _V1_UNLIMITED:
        limit = None
    return {
        "limit": limit,
        "used": _read_int(v1 / "memory.usage_in_bytes"),
        "max_used": _read_int(v1 / "memory.max_usage_in_bytes"),
    }


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / _MIB, 2)


_procs: dict[int, psutil.Process] = {}


def _tracked(proc: psutil.Process) -> psutil.Process:
    """Reuse Process objects so ``cpu_percent`` measures since the previous call."""
    known = _procs.get(proc.pid)
    if known is None or not known.is_running():
        _procs[proc.pid] = known = proc
    return known


def stats_document(timing: dict[str, Any]) -> dict[str, Any]:
    """Build the ``/stats/`` body for the whole server (supervisor and every worker)."""
    master, workers = server_processes()
    entries = []
    worker_rows = []
    total_rss = 0
    for role, raw in [("master", master)] + [("worker", w) for w in workers]:
        proc = _tracked(raw)
        try:
            rss = proc.memory_info().rss
            entry = {
                "cmdline": proc.cmdline(),
                "cpu_percent": proc.cpu_percent(interval=None),
                "mem": _mib(rss),
                "pid": proc.pid,
                "role": role if workers else "server",
            }
        except psutil.Error:
            continue
        total_rss += rss
        entries.append(entry)
        if role == "worker":
            worker_rows.append({"pid": proc.pid, "rss": _mib(rss)})
    if not workers:
        worker_rows.append({"pid": master.pid, "rss": entries[0]["mem"] if entries else None})
    vm = psutil.virtual_memory()
    cont = container_memory()
    limit = cont["limit"]
    if limit is not None and cont["used"] is not None:
        avail = free = _mib(max(limit - cont["used"], 0))
    else:
        avail, free = _mib(vm.available), _mib(vm.free)
    events = Events(state_dir()).read()
    # Imported here, like every metrics import of the core: prometheus-client must not be
    # loaded before the launcher has set PROMETHEUS_MULTIPROC_DIR.
    from tandem.observability.metrics import otel_totals

    return {
        "drum_info": entries,
        "mem_info": {
            "avail": avail,
            "container_limit": _mib(limit),
            "container_max_used": _mib(cont["max_used"]),
            "container_used": _mib(cont["used"]),
            "drum_rss": _mib(total_rss),
            "free": free,
            "total": _mib(vm.total),
        },
        "otel_info": otel_totals(),
        "time_info": {"run_predictor_total": timing},
        "worker_info": {
            "oom_kills": events["oom_kills"],
            "worker_kills": events["worker_kills"],
            "worker_restarts": events["worker_restarts"],
            "workers": worker_rows,
        },
    }

"""Process and machine figures read straight from ``/proc`` (Linux only).

CPU time of a server is the sum of ``utime + stime + cutime + cstime`` of every process in it:
its own session (the harness starts each server with ``start_new_session=True``, so the session
id is the launcher's pid) plus any descendant that left the session. ``cutime``/``cstime`` keep a
worker that exits (and is reaped) during a run counted. Memory is ``Rss`` and ``Pss`` from
``/proc/<pid>/smaps_rollup`` summed over the same processes, and RSS averaged over the worker
processes alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the harness uses (times in clock ticks)."""

    pid: int
    state: str
    ppid: int
    session: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """CPU ticks of the process and of its reaped children."""
        return self.utime + self.stime + self.cutime + self.cstime


def read_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; None when the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3].
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        session=int(rest[3]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def all_stats() -> dict[int, ProcStat]:
    """``ProcStat`` of every process on the machine, by pid."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def server_processes(root: int) -> list[ProcStat]:
    """The processes of the server launched as ``root``: its session plus its descendants."""
    stats = all_stats()
    members = {pid for pid, st in stats.items() if st.session == root}
    if root in stats:
        members.add(root)
    changed = True
    while changed:
        changed = False
        for pid, st in stats.items():
            if pid not in members and st.ppid in members:
                members.add(pid)
                changed = True
    return [stats[pid] for pid in sorted(members)]


def cpu_seconds(root: int) -> float:
    """Total CPU seconds used so far by the server launched as ``root``."""
    return sum(st.ticks for st in server_processes(root)) / CLK_TCK


def _rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in kB, (0, 0) when unreadable (gone, zombie)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def memory_mb(root: int) -> dict[str, float | int]:
    """RSS and PSS (MB) summed over the server's live processes, and per worker process.

    A worker is a process whose parent is also one of the server's (Gunicorn's and Tandem's
    workers under their master or supervisor); a server of one process is its own worker.
    """
    procs = [st for st in server_processes(root) if st.state != "Z"]
    pids = {st.pid for st in procs}
    rollups = {st.pid: _rollup(st.pid) for st in procs}
    workers = [st.pid for st in procs if st.ppid in pids] or [st.pid for st in procs[:1]]
    n = max(len(workers), 1)
    return {
        "rss_mb": sum(r for r, _ in rollups.values()) / 1024,
        "pss_mb": sum(p for _, p in rollups.values()) / 1024,
        "worker_rss_mb": sum(rollups[pid][0] for pid in workers) / n / 1024,
        "processes": len(procs),
    }


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from the first line of ``/proc/stat``."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return total - idle, total


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def mem_total_gib() -> float:
    """Physical memory in GiB from ``/proc/meminfo``."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0

"""Attributing a worker's SIGKILL to the OOM killer only on the kernel's evidence."""

from __future__ import annotations

from pathlib import Path

from tandem.observability.oom import OomWitness, _read_oom_kill
from tandem.observability.state import Events, WorkerExit


def _counter(path: Path, kills: int, v2: bool = True) -> Path:
    if v2:
        path.write_text(f"low 0\nhigh 0\nmax 3\noom 2\noom_kill {kills}\noom_group_kill 0\n")
    else:
        path.write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    return path


def test_counter_formats_of_both_cgroup_versions(tmp_path: Path) -> None:
    assert _read_oom_kill(_counter(tmp_path / "memory.events", 4)) == 4
    assert _read_oom_kill(_counter(tmp_path / "memory.oom_control", 2, v2=False)) == 2
    assert _read_oom_kill(tmp_path / "missing") is None


def test_a_kill_is_an_oom_kill_only_when_the_counter_rose(tmp_path: Path) -> None:
    counter = _counter(tmp_path / "memory.events", 3)
    witness = OomWitness(counter, read_kernel_log=False)
    assert not witness.was_oom(100)  # kill -9: the counter did not move
    _counter(counter, 4)
    assert witness.was_oom(101)
    assert not witness.was_oom(102)  # the same kernel kill is not counted twice


def test_no_counter_and_no_kernel_log_means_no_oom(tmp_path: Path) -> None:
    witness = OomWitness(tmp_path / "absent", read_kernel_log=False)
    assert not witness.was_oom(100)


def test_events_count_oom_kills_apart_from_other_kills(tmp_path: Path) -> None:
    events = Events(tmp_path)
    events.record(WorkerExit(1, True, None, "killed by SIGKILL"), restarted=True)
    events.record(WorkerExit(2, True, None, "OOM-killed", oom=True), restarted=True)
    assert events.read() == {"worker_restarts": 2, "oom_kills": 1, "worker_kills": 1}

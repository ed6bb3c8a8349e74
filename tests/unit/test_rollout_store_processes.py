"""The rollout store as several processes and connections use it at once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore

READ = (
    "import sys\n"
    "from pathlib import Path\n"
    "from tandem.rollout.store import RolloutStore\n"
    "s = RolloutStore(Path(sys.argv[1]))\n"
    "print(s.load_status().weight)\n"
)


def _weight_seen_by_another_process(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def _status(weight: float) -> RolloutStatus:
    return RolloutStatus(
        phase=Phase.CANARY, weight=weight, started_at=1, phase_started_at=1, step_started_at=1
    )


def test_a_second_store_in_the_process_never_hides_the_firsts_writes(tmp_path: Path) -> None:
    """The fleet controller keeps a second connection for its walk's threads (and a dashboard
    may open one): another process must still see every write of the first. Opening the
    file again beside a live connection used to drop its SQLite locks, and `tandem fleet
    status` (and the e2e test) then read the first status for the whole walk."""
    path = tmp_path / "state.db"
    first = RolloutStore(path)
    first.save(_status(5.0), action="start", rule="operator.start")
    second = RolloutStore(path, any_thread=True)
    for weight in (25.0, 50.0, 100.0):
        first.save(_status(weight), action="step_up", rule="step.passed")
        second.set_json("fleet_members", {"at": weight})
        assert _weight_seen_by_another_process(path) == weight
    second.close()
    first.close()


def test_a_new_state_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.db"
    RolloutStore(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

"""``tandem rollout status|history|pause|resume|abort|promote|report`` on a state file: asking
never creates one, and what is printed is the recorded text (no rich markup)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tandem.cli import main
from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore

COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["history"],
    ["history", "--json"],
    ["pause"],
    ["resume"],
    ["abort"],
    ["promote"],
    ["report", "--extension", "custom route /explain returned 500"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_wrong_state_path_is_reported_and_not_created(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "typo.db"
    code = main(["rollout", command[0], "--state", str(state), *command[1:]])
    assert code == 1
    out = capsys.readouterr()
    assert f"no rollout recorded in {state}" in out.out + out.err or '"status": null' in out.out
    assert not state.exists()
    assert list(tmp_path.iterdir()) == []


def test_status_prints_the_rule_in_brackets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule like ``[gradual.p99]`` and a reason with brackets are shown as recorded."""
    state = tmp_path / "rollout.db"
    store = RolloutStore(state)
    now = time.time()
    status = RolloutStatus(
        phase=Phase.REDUCING,
        weight=25.0,
        step_index=3,
        started_at=now,
        phase_started_at=now,
        step_started_at=now,
    )
    reason = "candidate P99 +80% vs baseline (> +20%) [window 5m]"
    store.save(status, action="reduce", rule="gradual.p99", from_weight=50.0, reason=reason)
    store.close()
    assert main(["rollout", "status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"reduce [gradual.p99]: {reason}" in " ".join(out.split())

"""Edge cases of the fleet found in review: bad inventory URLs, out-of-range stored percentages,
the reduction wait after a slow walk, and a malformed ``--steps``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from tandem.cli import main
from tandem.errors import ConfigError
from tandem.fleet.inventory import parse_inventory
from tandem.rollout.status import Phase
from tests.fleet.support import SPEC, make_rig


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:99999", "(?i)port"),
        ("http://h:abc", "(?i)port"),
        ("http://[::1:8080", "url"),
    ],
)
def test_an_inventory_url_with_a_bad_port_or_host_is_a_clear_error(
    tmp_path: Path, url: str, message: str
) -> None:
    (tmp_path / "a.env").write_text("MLOPS_DEPLOYMENT_ID=a\n")
    doc = {"deployments": [{"id": "a", "url": url, "env_file": "a.env", "restart_cmd": "true"}]}
    with pytest.raises(ConfigError, match=message) as caught:
        parse_inventory(doc, "fleet.yaml", tmp_path)
    assert "deployments[0] (id 'a')" in str(caught.value)


def test_a_stored_percentage_out_of_range_does_not_stop_a_put_back(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    dep = rig.world.deployments["fleet-17"]
    dep.percent = "-1"  # what its env file said before the fleet started: not a percentage
    dep.fail_on = {"fastapi"}
    status = rig.controller.initial_status()
    assert (status.phase, status.weight) == (Phase.CANARY, 5.0)
    # Moved, failed, and put back on Flask (at 0 %, the only valid percentage that gives Flask).
    assert (dep.side, dep.percent) == ("flask", "0")
    state = rig.controller.states["fleet-17"]
    assert state.held_at == 5.0
    assert state.verification is not None
    assert (state.verification["expect"], state.verification["passed"]) == ("flask", True)


def test_an_unreadable_percentage_on_a_silent_deployment_does_not_stop_the_walk(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    dep = rig.world.deployments["fleet-02"]
    dep.percent, dep.up = "150", False
    status = rig.controller.initial_status()
    assert (status.phase, status.weight) == (Phase.CANARY, 5.0)
    assert rig.world.on_fastapi() == {"fleet-17"}


def test_the_reduction_wait_starts_once_the_reduction_is_walked(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_unavailable=1)
    status = rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 100.0)
    # Each restart takes longer than the whole reduction wait.
    rig.world.on_restart.append(lambda dep: setattr(rig.clock, "now", rig.clock.now + 100.0))
    rig.metrics.candidate_p99 = 0.100  # gradual
    status = rig.until(lambda s: s.phase.is_terminal)
    assert status.phase == Phase.ROLLED_BACK
    reductions = [r for r in rig.decisions() if r.action in ("reduce", "rollback")]
    assert [(r.from_weight, r.to_weight) for r in reductions][:2] == [(100, 50), (50, 25)]
    applies = [r for r in rig.decisions("apply") if r.at >= reductions[0].at]
    # The fleet holds at each reduced percentage for the full wait after its deployments moved.
    for reduction, next_reduction in zip(reductions, reductions[1:], strict=False):
        walked = next(a for a in applies if a.at >= reduction.at)
        assert next_reduction.at - walked.at >= SPEC.reduction_wait, (reduction, next_reduction)


def test_a_malformed_steps_flag_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "a.env"
    env.write_text("MLOPS_DEPLOYMENT_ID=a\n")
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {"id": "a", "url": "http://a:1", "env_file": str(env), "restart_cmd": "r"}
                ]
            }
        )
    )
    code = main(["fleet", "start", "--dry-run", "--inventory", str(inventory), "--steps", "5,abc"])
    assert code == 1
    assert "--steps" in capsys.readouterr().err


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_restart_command_past_its_timeout_is_stopped_with_what_it_started(
    tmp_path: Path,
) -> None:
    """A hung restart command is abandoned at its timeout; the background process it started
    is stopped too, so nothing is left running that nobody owns."""
    from tandem.fleet.places import RestartError, run_restart

    pidfile = tmp_path / "child.pid"
    command = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    with pytest.raises(RestartError, match="did not finish within 1 s"):
        run_restart(command, timeout=1.0)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_restart_command_that_starts_a_server_and_exits_leaves_it_running(
    tmp_path: Path,
) -> None:
    """A command that finishes in time keeps what it started: that is the deployment."""
    from tandem.fleet.places import run_restart

    pidfile = tmp_path / "server.pid"
    run_restart(f"sleep 300 > /dev/null 2>&1 & echo $! > {pidfile}", timeout=10.0)
    server = int(pidfile.read_text())
    try:
        assert _alive(server)
    finally:
        os.kill(server, signal.SIGKILL)


def test_what_a_timed_out_restart_started_gets_its_sigterm_grace(tmp_path: Path) -> None:
    """The group gets SIGTERM and time to exit cleanly, not only the shell."""
    from tandem.fleet.places import RestartError, run_restart

    done = tmp_path / "cleaned-up"
    child = tmp_path / "child.py"
    child.write_text(
        "import pathlib, signal, sys, time\n"
        "def bye(*_):\n"
        "    time.sleep(0.5)\n"
        f"    pathlib.Path({str(done)!r}).write_text('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "time.sleep(300)\n"
    )
    with pytest.raises(RestartError):
        run_restart(f"{sys.executable} {child} & wait", timeout=1.0)
    assert done.read_text() == "yes"

"""A rollout controller that cannot be run twice, never leaves servers nobody owns, keeps its
token secret and records a changed spec. Regression tests for issue 13 defects 2, 3, 12 and 13.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.rollout.harness import FAST_SPEC, Load, Rollout

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-admin-token-value"
#: Long enough that nothing is decided while a test looks at the controller.
SLOW_SPEC = {**FAST_SPEC, "shadow_duration": "10m"}


def _servers_of(tmp_path: Path) -> list[psutil.Process]:
    """The rollout's live serving processes (baseline, candidate, router and their workers):
    every process whose command line names this test's directory, but the controller."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if any(str(tmp_path) in part for part in cmdline) and "rollout" not in cmdline[3:5]:
            found.append(proc)
    return found


def _wait_gone(tmp_path: Path, timeout: float = 30.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = _servers_of(tmp_path)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _servers_of(tmp_path)
    return left


def _second_start(rollout: Rollout, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*rollout.command, *extra],
        env=rollout.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_admin_token_rollout_starts_and_keeps_the_token_secret(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC, admin_token=TOKEN).start()
    try:
        # The controller runs: it evaluates and records observations through the token.
        rollout.wait_for(lambda: bool(rollout.store().observations(limit=1)), 30, "evaluations")
        assert httpx.get(rollout.admin_url + "/api/stats", timeout=5).status_code == 401
        assert rollout.router_stats()["routing"]["weight_bp"] == 0
    finally:
        rollout.stop()
    assert _wait_gone(tmp_path) == []
    files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        assert TOKEN.encode() not in path.read_bytes(), path


def test_resume_needs_the_same_admin_token(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC, admin_token=TOKEN).start()
    try:
        rollout.kill_controller()
        plain = [a for a in rollout.command if a not in ("--admin-token", TOKEN)]
        missing = subprocess.run(plain, env=rollout.env, capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1
        assert "pass the same --admin-token" in missing.stderr
        wrong = subprocess.run(
            [*plain, "--admin-token", "other"],
            env=rollout.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 1 and "does not match" in wrong.stderr
        # Refusing to resume stopped nothing: the router still serves.
        assert httpx.get(rollout.url + "/ping", timeout=5).status_code == 200
    finally:
        rollout.start()
        rollout.stop()
    assert _wait_gone(tmp_path) == []


def test_second_start_on_the_same_state_is_refused_and_disturbs_nothing(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC).start()
    load = Load(rollout.url, threads=2, max_seconds=60).start()
    try:
        before = rollout.child_pids()
        second = _second_start(rollout)
        assert second.returncode == 1
        assert f"PID {rollout.proc.pid}" in second.stderr, second.stderr
        assert rollout.child_pids() == before
        assert all(psutil.pid_exists(pid) for pid in before.values())
        time.sleep(1.0)
    finally:
        load.stop()
        rollout.stop()
    assert load.total > 20 and load.failures == 0 and load.error_rate == 0.0
    assert _wait_gone(tmp_path) == []


def test_children_restarted_before_a_controller_kill_are_stopped_by_the_next(
    tmp_path: Path,
) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC).start()
    try:
        first = rollout.child_pids()
        os.killpg(first["router"], signal.SIGKILL)
        # The controller restarts the router and records the new one before anything else.
        rollout.wait_for(
            lambda: rollout.child_pids().get("router", first["router"]) != first["router"],
            60,
            "router restarted and recorded",
        )
        rollout.wait_for(rollout._router_up, 60, "router up again")
        rollout.kill_controller()
        rollout.start()
        assert rollout.child_pids()["router"] != first["router"]
        subprocess.run(
            [*rollout.command[:3], "rollout", "abort", "--state", str(rollout.state)],
            check=True,
            timeout=60,
            capture_output=True,
        )
        rollout.wait_phase({"aborted"}, timeout=30)
    finally:
        if rollout.proc is not None and rollout.proc.poll() is None:
            rollout.proc.send_signal(signal.SIGTERM)
            rollout.proc.wait(timeout=60)
    left = _wait_gone(tmp_path)
    rollout.stop()
    assert left == [], [p.cmdline() for p in left]
    with pytest.raises(httpx.HTTPError):
        httpx.get(rollout.url + "/ping", timeout=2)


def test_failed_start_leaves_no_server_running(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC)
    # The candidate cannot start: the baseline that did must not outlive the controller.
    broken = rollout.code_dir / "custom.py"
    broken.write_text(
        broken.read_text()
        + "\nimport os\nif os.environ.get('MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE') == 'fastapi':\n"
        "    raise SystemExit('candidate cannot start')\n"
    )
    done = subprocess.run(
        rollout.command, env=rollout.env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode != 0
    assert _wait_gone(tmp_path) == [], [p.cmdline() for p in _servers_of(tmp_path)]


def test_resume_with_a_changed_spec_is_recorded(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=SLOW_SPEC).start()
    try:
        rollout.kill_controller()
        rollout.command += ["--step-hold", "7s"]
        rollout.start()
        rollout.wait_for(
            lambda: any(r.action == "spec_change" for r in rollout.history()), 30, "spec change"
        )
        change = next(r for r in rollout.history() if r.action == "spec_change")
        assert change.numbers["changes"] == {"step_hold": {"before": 2.0, "after": 7.0}}
        # Resuming with the same command line records nothing more.
        rollout.kill_controller()
        rollout.start()
        time.sleep(1.5)
        assert sum(r.action == "spec_change" for r in rollout.history()) == 1
    finally:
        rollout.stop()

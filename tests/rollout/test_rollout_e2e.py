"""End-to-end rollouts: real baseline (flask), candidate (fastapi) and router on 127.0.0.1.

The candidate is a fixture model that misbehaves only on the FastAPI stack; each scenario
checks the rule named in the history and that clients saw an error rate under the trigger.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cgroups import memory_cgroup, remove
from tests.rollout.harness import FAST_SPEC, Load, NotifyReceiver, Rollout

pytestmark = pytest.mark.e2e


def _rules(rollout: Rollout) -> list[str]:
    return [r.rule for r in rollout.history()]


def _run_until_rolled_back(
    tmp_path: Path,
    fault: str,
    env: dict[str, str] | None = None,
    spec: dict | None = None,
    extra_args: list[str] | None = None,
) -> tuple[Rollout, Load]:
    rollout = Rollout(tmp_path, fault=fault, env=env, spec=spec, extra_args=extra_args).start()
    load = Load(rollout.url).start()
    try:
        rollout.wait_phase({"rolled_back"}, timeout=90)
    finally:
        load.stop()
    return rollout, load


def test_healthy_candidate_is_promoted(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path).start()
    load = Load(rollout.url).start()
    try:
        status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=90)
        assert status.phase.value == "promoted", _rules(rollout)
        assert status.weight == 100
        actions = [(r.action, r.to_weight) for r in rollout.history() if r.action != "hold"]
        assert actions == [
            ("start", 0),
            ("start_canary", 10),
            ("step_up", 50),
            ("step_up", 100),
            ("promote", 100),
        ], actions
        stats = rollout.router_stats()
        assert stats["routing"]["weight_bp"] == 10000
        assert stats["mirror"]["compared"] > 0 and stats["mirror"]["differing"] == 0
    finally:
        load.stop()
        rollout.stop()
    assert load.total > 100 and load.error_rate == 0.0


#: The leak test is about the leak rule: the memory-ratio trigger (gradual) would otherwise
#: race it, since 4 MiB a request also makes the candidate far bigger than the baseline, and
#: on a loaded machine the allocations make it slow enough to trip the P99 trigger first.
LEAK_ONLY = {
    **FAST_SPEC,
    "triggers": {**FAST_SPEC["triggers"], "memory_increase": 1000.0, "p99_increase": 1000.0},
}


@pytest.mark.parametrize(
    ("fault", "rule", "spec"),
    [
        # 5 % errors from the start: see the canary test below (in shadow the first mirrored 500
        # fails shadow, or the error-rate trigger fires first, whichever evidence comes first).
        ("one_error", "shadow.failure", None),
        ("last_digit", "immediate.prediction_difference", None),
        ("oom", "immediate.oom", None),
        ("leak", "immediate.memory_leak", LEAK_ONLY),
    ],
)
def test_faulty_candidate_is_rolled_back_by_the_right_rule(
    tmp_path: Path, fault: str, rule: str, spec: dict | None
) -> None:
    hook = NotifyReceiver()
    # A real OOM kill: the candidate's worker runs past a small memory cgroup's limit.
    group = memory_cgroup(64 * 1024 * 1024) if fault == "oom" else None
    env = {"TANDEM_TEST_OOM_CGROUP": str(group)} if group else None
    try:
        rollout, load = _run_until_rolled_back(
            tmp_path, fault, env=env, spec=spec, extra_args=["--notify-url", hook.url]
        )
    finally:
        if group is not None:
            remove(group)
    try:
        status = rollout.status()
        assert status is not None and status.rollback_rule == rule, _rules(rollout)
        assert status.weight == 0
        assert rollout.router_stats()["routing"]["weight_bp"] == 0
        assert rule in _rules(rollout)
        rollout.wait_for(lambda: "post_rollback.verify" in _rules(rollout), 60, "verification")
        verify = next(r for r in rollout.history() if r.rule == "post_rollback.verify")
        assert "passed" in verify.reason, verify.reason
        # Slack-compatible notifications: the start and the rollback, naming the rule.
        rollout.wait_for(lambda: any(rule in m["text"] for m in hook.messages), 20, "notify")
        assert any("started" in m["text"] for m in hook.messages)
        assert all(isinstance(m["text"], str) and "rollout" in m for m in hook.messages)
    finally:
        rollout.stop()
        hook.close()
    # Clients never saw the candidate's trouble reach the immediate trigger (1 %).
    assert load.total >= 20  # an immediate rule may fire within a second of traffic
    assert load.error_rate < 0.01, (load.statuses, load.failures)


def test_deadlocked_candidate_is_rolled_back(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, fault="hang").start()
    load = Load(rollout.url).start()
    try:
        # The candidate's event loop blocks (answering nothing) once it serves traffic.
        rollout.wait_phase({"canary"}, timeout=60)
        (rollout.code_dir / "fault.flag").write_text("hang")
        status = rollout.wait_phase({"rolled_back"}, timeout=60)
        assert status.rollback_rule == "immediate.deadlock", _rules(rollout)
        deadlock = next(r for r in rollout.history() if r.rule == "immediate.deadlock")
        assert "unanswered" in deadlock.reason
    finally:
        load.stop()
        rollout.stop()
    assert load.error_rate < 0.01, (load.statuses, load.failures)


def test_errors_that_start_in_canary_are_rolled_back_by_the_error_rate(tmp_path: Path) -> None:
    """Shadow passes on a healthy candidate; 5 % errors once it serves trip the 1 % trigger. (The
    gradual rule, which at 0.1 % needs less evidence and would reduce it first, is raised to the
    immediate rule's 1 %, where the immediate rule, judged first, always wins.)"""
    spec = {**FAST_SPEC, "triggers": {**FAST_SPEC["triggers"], "gradual_error_rate": 0.01}}
    rollout = Rollout(tmp_path, fault="errors", env={"ROLLOUT_FAULT_FLAG": "1"}, spec=spec).start()
    load = Load(rollout.url).start()
    try:
        rollout.wait_phase({"canary"}, timeout=60)
        (rollout.code_dir / "fault.flag").write_text("errors")
        status = rollout.wait_phase({"rolled_back"}, timeout=90)
        assert status.rollback_rule == "immediate.error_rate", _rules(rollout)
        assert "shadow.passed" in _rules(rollout)
    finally:
        load.stop()
        rollout.stop()


def test_slow_candidate_is_reduced_through_the_table(tmp_path: Path) -> None:
    spec = {
        **FAST_SPEC,
        "steps": [10, 30, 60, 100],
        "step_hold": "3s",
        "window": "4s",
        "reduction_wait": "4s",
        "min_samples": 10,
        "triggers": {**FAST_SPEC["triggers"], "p99_increase": 5.0},
    }
    rollout = Rollout(
        tmp_path,
        fault="slow",
        spec=spec,
        env={"ROLLOUT_FAULT_FLAG": "1"},
        extra_args=["--backend-timeout", "10"],
    ).start()
    load = Load(rollout.url, threads=6).start()
    try:
        # The candidate turns slow (+0.25 s a request, one thread) once it serves 60 %.
        rollout.wait_for(
            lambda: (s := rollout.status()) is not None and s.weight >= 60, 60, "weight 60"
        )
        (rollout.code_dir / "fault.flag").write_text("slow")
        rollout.wait_phase({"rolled_back"}, timeout=60)
        rows = rollout.history()
        reductions = [(r.from_weight, r.to_weight) for r in rows if r.action == "reduce"]
        final = next(r for r in rows if r.action == "rollback")
        assert final.rule == "gradual.p99", [r.rule for r in rows]
        path = reductions + [(final.from_weight, final.to_weight)]
        # The seed's table: > 50 -> 50, 25-50 -> 25, 10-25 -> 5, 1-10 -> 0.
        assert path == [(60.0, 50.0), (50.0, 25.0), (25.0, 5.0), (5.0, 0.0)], path
    finally:
        load.stop()
        rollout.stop()
    assert load.error_rate < 0.01


def test_killed_controller_resumes_at_the_same_phase_and_weight(tmp_path: Path) -> None:
    spec = {**FAST_SPEC, "steps": [10, 50, 100], "step_hold": "4s"}
    rollout = Rollout(tmp_path, spec=spec).start()
    load = Load(rollout.url).start()
    try:
        before = rollout.wait_phase({"canary"}, timeout=60)
        # The weight is recorded before the router is told it: kill only once it was applied.
        expected_bp = round(before.weight * 100)
        rollout.wait_for(
            lambda: rollout.router_stats()["routing"]["weight_bp"] == expected_bp, 10, "applied"
        )
        rollout.kill_controller()
        weight_bp = rollout.router_stats()["routing"]["weight_bp"]
        assert weight_bp == expected_bp
        served_before = load.total
        rollout.wait_for(lambda: load.total > served_before + 50, 30, "traffic without controller")
        saved = rollout.status()
        assert saved is not None and saved.phase.value == "canary"
        rollout.start()  # same state file: adopts the children and resumes
        status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=90)
        assert status.phase.value == "promoted", _rules(rollout)
        starts = [r for r in rollout.history() if r.action == "start"]
        assert len(starts) == 1  # resumed, not restarted from shadow
    finally:
        load.stop()
        rollout.stop()
    assert load.error_rate == 0.0, (load.statuses, load.failures)


def test_operator_commands_pause_and_abort(tmp_path: Path) -> None:
    import subprocess
    import sys

    spec = {**FAST_SPEC, "steps": [10, 50, 100], "step_hold": "3s"}
    rollout = Rollout(tmp_path, spec=spec).start()
    load = Load(rollout.url).start()

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "tandem", "rollout", *args, "--state", str(rollout.state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    try:
        rollout.wait_phase({"canary"}, timeout=60)
        cli("pause")
        paused = rollout.wait_phase({"paused"}, timeout=20)
        assert "paused" in cli("status")
        cli("abort")
        aborted = rollout.wait_phase({"aborted"}, timeout=20)
        assert aborted.weight == 0 and paused.weight > 0
        history = cli("history")
        assert "operator.pause" in history and "operator.abort" in history
    finally:
        load.stop()
        rollout.stop()


def test_two_minute_healthy_soak_makes_no_rollback(tmp_path: Path) -> None:
    spec = {
        **FAST_SPEC,
        "steps": [1, 5, 10, 25, 50, 75, 90, 100],
        "shadow_duration": "10s",
        "step_hold": "12s",
        "window": "10s",
        "min_samples": 50,
    }
    rollout = Rollout(tmp_path, spec=spec).start()
    load = Load(rollout.url, max_seconds=150).start()
    try:
        rollout.wait_for(lambda: load.total > 0, 30, "first requests")
        started = load.total
        import time

        time.sleep(120)
        rules = _rules(rollout)
        assert not any(r.startswith(("immediate.", "gradual.")) for r in rules), rules
        status = rollout.status()
        assert status is not None and status.phase.value in ("canary", "promoted"), rules
        assert status.weight >= 50, rules
        assert load.total - started > 1000
    finally:
        load.stop()
        rollout.stop()
    assert load.error_rate == 0.0, (load.statuses, load.failures)

"""Attach targets: the rollout drives deployments something else runs and never touches them.

Baseline (flask) and candidate (fastapi) are real ``tandem server`` processes started by the
test, as a platform's own deployments would be; ``tandem rollout start --baseline-url
--candidate-url`` only runs the router and the controller.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.rollout.harness import Load, Rollout
from tests.support import FIXTURES, ServerProcess

pytestmark = pytest.mark.e2e


def _deployments(
    tmp_path: Path, candidate_env: dict[str, str] | None = None
) -> tuple[ServerProcess, ServerProcess]:
    code_dir = tmp_path / "deployed"
    shutil.copytree(FIXTURES / "rollout_candidate", code_dir)
    args = ["--target-type", "regression"]
    baseline = ServerProcess(code_dir, "flask", args=args).start()
    candidate = ServerProcess(code_dir, "fastapi", args=args, env=candidate_env).start()
    return baseline, candidate


def _attach(baseline: ServerProcess, candidate: ServerProcess) -> list[str]:
    return ["--baseline-url", baseline.url, "--candidate-url", candidate.url]


def test_attached_healthy_candidate_is_promoted_and_left_running(tmp_path: Path) -> None:
    baseline, candidate = _deployments(tmp_path)
    pids = (baseline.proc.pid, candidate.proc.pid)  # type: ignore[union-attr]
    try:
        rollout = Rollout(tmp_path, extra_args=_attach(baseline, candidate)).start()
        load = Load(rollout.url).start()
        try:
            status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=90)
            assert status.phase.value == "promoted"
            assert set(rollout.child_pids()) == {"router"}  # nothing else is the rollout's
        finally:
            load.stop()
            rollout.stop()
        assert load.total > 100 and load.error_rate == 0.0
        # The controller never stopped the deployments it did not start.
        for server, pid in zip((baseline, candidate), pids, strict=True):
            assert server.proc is not None and server.proc.poll() is None and server.proc.pid == pid
            assert httpx.get(server.url + "/ping", timeout=5).status_code == 200
    finally:
        baseline.stop()
        candidate.stop()


def test_attached_faulty_candidate_is_rolled_back_and_not_stopped(tmp_path: Path) -> None:
    baseline, candidate = _deployments(tmp_path, {"ROLLOUT_FAULT": "last_digit"})
    try:
        rollout = Rollout(tmp_path, extra_args=_attach(baseline, candidate)).start()
        load = Load(rollout.url).start()
        try:
            status = rollout.wait_phase({"rolled_back"}, timeout=90)
            assert status.rollback_rule == "immediate.prediction_difference"
            assert rollout.router_stats()["routing"]["weight_bp"] == 0
        finally:
            load.stop()
            rollout.stop()
        assert candidate.proc is not None and candidate.proc.poll() is None
    finally:
        baseline.stop()
        candidate.stop()


def test_attach_refuses_a_deployment_on_the_wrong_stack(tmp_path: Path) -> None:
    baseline, candidate = _deployments(tmp_path)
    try:
        rollout = Rollout(
            tmp_path, extra_args=["--baseline-url", baseline.url, "--candidate-url", baseline.url]
        )
        proc = subprocess.run(
            rollout.command, capture_output=True, text=True, timeout=60, env=rollout.env
        )
        assert proc.returncode == 1
        assert (
            f"--candidate-url {baseline.url} serves flask (/info/ drumServer='flask', "
            "processServer='werkzeug'); the rollout expects fastapi there (--candidate)"
        ) in proc.stderr
        assert not rollout.child_pids()  # refused before anything started
    finally:
        baseline.stop()
        candidate.stop()
